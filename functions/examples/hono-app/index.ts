// A Hono app deployed as is: Hono's app object has fetch(request, env, ctx), the Web standard
// handler fnctl calls. hono resolves from the repo's node_modules (esbuild looks upward).
import { Hono } from 'hono';

interface User {
  id: number;
  name: string;
}

const users: User[] = [
  { id: 1, name: 'Ada Lovelace' },
  { id: 2, name: 'Grace Hopper' },
  { id: 3, name: 'Barbara Liskov' },
];

const app = new Hono();

app.get('/', (c) => c.json({ message: 'Hello from Hono on fnctl', routes: ['GET /', 'GET /users/:id', 'POST /echo'] }));

app.get('/users/:id', (c) => {
  const user = users.find((u) => u.id === Number(c.req.param('id')));
  return user ? c.json(user) : c.json({ error: 'no such user' }, 404);
});

app.post('/echo', async (c) => {
  const text = await c.req.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: echo the text as is
  }
  return c.json({ method: c.req.method, headers: Object.fromEntries(c.req.raw.headers), body });
});

export default app;
