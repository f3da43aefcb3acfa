// The hello response both warm references send (load/bare-server.ts, load/hop-server.ts): the
// same bytes, so that what separates their figures is the hop alone.

// The body is a string, as in node's own hello world: node sends it and the headers in one write,
// which measured ~7 % faster than a Buffer here. The gateway writes small bodies the same way.
export const HELLO_BODY = 'Hello from fnctl!\n';
export const HELLO_HEADERS = { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(HELLO_BODY) };
