// Builds a guest bundle the way the platform does: a stub entry that imports the guest runtime
// first and the function second, bundled by esbuild into one CommonJS file.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const runtimePath = join(repo, 'microvm/guest/runtime.ts');

export interface GuestBundle {
  dir: string;
  bundlePath: string;
  cleanup(): Promise<void>;
}

/** Write `source` as the function's entry (named `filename`) next to the stub and bundle both. */
export async function bundleGuest(source: string, filename = 'index.mjs'): Promise<GuestBundle> {
  const dir = await mkdtemp(join(tmpdir(), 'fnctl-guest-'));
  await writeFile(join(dir, filename), source);
  const entry = join(dir, '__entry.mjs');
  await writeFile(
    entry,
    `import { startGuest } from ${JSON.stringify(runtimePath)};\nimport * as fn from ${JSON.stringify(`./${filename}`)};\nstartGuest(fn);\n`,
  );
  const bundlePath = join(dir, 'bundle.cjs');
  await build({
    entryPoints: [entry],
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    outfile: bundlePath,
    // The function lives in a temp dir: let it import the repo's packages (hono).
    nodePaths: [join(repo, 'node_modules')],
    logLevel: 'silent',
  });
  return { dir, bundlePath, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
