// The baseline: a bare node:http hello server in a process of its own (a server in the same
// process as the load generator halves its own figure). Prints {"url": …} once listening.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

// The body is a string, as in node's own hello world: node sends it and the headers in one write,
// which measured ~7 % faster than a Buffer here. The gateway writes small bodies the same way.
const body = 'Hello from fnctl!\n';
const length = Buffer.byteLength(body);
const server = http.createServer({ keepAliveTimeout: 5000 }, (_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': length });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${port}` }) + '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
