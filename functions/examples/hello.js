// The smallest fnctl function, in the Web standard style (as in Cloudflare Workers, Deno, Bun):
// GET /fn/hello → "Hello from fnctl!", GET /fn/hello?name=Ada → "Hello, Ada!".
export default {
  fetch(request) {
    const url = new URL(request.url);
    const name = url.searchParams.get('name');
    const greeting = name ? `Hello, ${name}!` : 'Hello from fnctl!';
    return new Response(`${greeting}\n`, { headers: { 'content-type': 'text/plain; charset=utf-8' } });
  },
};
