#!/usr/bin/env node
// The `fnctl` command: runs the compiled CLI (npm install builds it through the prepare script).
import { existsSync } from 'node:fs';

const cli = new URL('../dist/bin/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('fnctl: error: the CLI is not built: run `npm install` (or `npm run build`) in the fnctl folder\n');
  process.exit(1);
}
const { main } = await import(cli.href);
await main(process.argv);
