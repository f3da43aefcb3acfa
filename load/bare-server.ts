// The baseline: a bare node:http hello server in a process of its own (a server in the same
// process as the load generator halves its own figure). Prints {"url": …} once listening.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HELLO_BODY, HELLO_HEADERS } from './hello-response.js';

const server = http.createServer({ keepAliveTimeout: 5000 }, (_req, res) => {
  res.writeHead(200, HELLO_HEADERS);
  res.end(HELLO_BODY);
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${port}` }) + '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
