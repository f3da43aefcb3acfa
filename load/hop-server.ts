// The second reference of the warm scenario: the bare hello server with one process hop in it, as
// every platform that runs a function outside its HTTP server has. Each request's id goes to a
// child process over a socketpair on fd 3 and the response is written once the child sends the id
// back; both sides batch what arrives in one turn of their event loop into one write, as fnctl's
// gateway and guest do. Nothing else: no routing, no framing beyond a line per id, no handler in
// the child. What it gets of the bare server's throughput and p99 is what any hop costs on this
// machine; fnctl's warm path is that plus its own work. Prints {"url": …} once listening.
import http from 'node:http';
import { spawn } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { HELLO_BODY, HELLO_HEADERS } from './hello-response.js';

/** Complete lines of BUF, and the rest to keep. */
function lines(buf: string): [string[], string] {
  const end = buf.lastIndexOf('\n');
  if (end < 0) return [[], buf];
  return [buf.slice(0, end).split('\n'), buf.slice(end + 1)];
}

function child(): void {
  const channel = new net.Socket({ fd: 3, readable: true, writable: true });
  let rest = '';
  channel.setEncoding('latin1');
  channel.on('data', (chunk: string) => {
    const [ids, kept] = lines(rest + chunk);
    rest = kept;
    if (ids.length > 0) channel.write(ids.join('\n') + '\n');
  });
  channel.on('end', () => process.exit(0));
}

function parent(): void {
  const worker = spawn(process.execPath, [fileURLToPath(import.meta.url), 'child'], { stdio: ['ignore', 'inherit', 'inherit', 'pipe'] });
  const channel = worker.stdio[3] as net.Socket;
  const waiting = new Map<string, http.ServerResponse>();
  let next = 0;
  let outbox = '';
  let rest = '';
  channel.setEncoding('latin1');
  channel.on('data', (chunk: string) => {
    const [ids, kept] = lines(rest + chunk);
    rest = kept;
    for (const id of ids) {
      const res = waiting.get(id);
      if (!res) continue;
      waiting.delete(id);
      res.writeHead(200, HELLO_HEADERS);
      res.end(HELLO_BODY);
    }
  });
  const flush = () => {
    channel.write(outbox);
    outbox = '';
  };
  const server = http.createServer({ keepAliveTimeout: 5000 }, (_req, res) => {
    const id = (++next).toString(36);
    waiting.set(id, res);
    if (outbox === '') setImmediate(flush);
    outbox += id + '\n';
  });
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo;
    process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${port}` }) + '\n');
  });
  let stopping = false;
  // A flush after the child went away writes to a closed socket: nothing to answer any more.
  channel.on('error', () => {});
  worker.on('exit', () => {
    // Exit only once the child is gone (reaped), so stopping this server leaves nothing behind.
    process.exit(stopping ? 0 : 1);
  });
  process.on('SIGTERM', () => {
    stopping = true;
    server.close();
    // Requests still waiting would never be answered now.
    server.closeAllConnections();
    worker.kill();
  });
}

if (process.argv[2] === 'child') child();
else parent();
