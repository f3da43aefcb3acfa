// Packaging with esbuild: each supported shape of function becomes one runnable CommonJS file, and
// each way it can fail is one clear line. Bundles run here with a stand-in guest runtime that
// calls the handler once (test/fixtures/runtime/stand-in-runtime.js).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { FnError } from '../../core/errors.js';
import { defaultName, guestRuntimePath, packageFunction, type PackagedFunction } from '../../functions/package.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const examples = path.join(root, 'functions/examples');
const fixtures = path.join(root, 'test/fixtures/functions');
const standIn = path.join(root, 'test/fixtures/runtime/stand-in-runtime.js');
const realRuntime = path.join(root, 'microvm/guest/runtime.ts');
const work = mkdtempSync(path.join(tmpdir(), 'fnctl-package-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let seq = 0;
interface Invoke {
  method?: string;
  path?: string;
  query?: string;
  body?: string;
}

/** Write the bundle to a file and run it once: {style, status, body} from the stand-in runtime. */
async function invoke(pkg: PackagedFunction, req: Invoke = {}): Promise<{ style: string; status: number; body: string }> {
  const file = path.join(work, `bundle-${++seq}.cjs`);
  writeFileSync(file, pkg.bundle);
  const { stdout } = await run(process.execPath, ['--enable-source-maps', file], {
    env: { ...process.env, FNCTL_TEST_INVOKE: JSON.stringify({ method: 'GET', path: '/', ...req }) },
  });
  return JSON.parse(stdout) as { style: string; status: number; body: string };
}

function pack(target: string, options: Parameters<typeof packageFunction>[1] = {}) {
  return packageFunction(target, { runtimeEntry: standIn, ...options });
}

async function failure(target: string, options: Parameters<typeof packageFunction>[1] = {}): Promise<FnError> {
  try {
    await pack(target, options);
  } catch (err) {
    expect(err).toBeInstanceOf(FnError);
    return err as FnError;
  }
  throw new Error(`packaging ${target} should have failed`);
}

describe('packageFunction: the examples', () => {
  it('hello.js: fetch style', async () => {
    const pkg = await pack(path.join(examples, 'hello.js'));
    expect(pkg.name).toBe('hello');
    expect(pkg.entry).toBe(path.join(examples, 'hello.js'));
    expect(pkg.settings).toBeUndefined();
    expect(await invoke(pkg)).toEqual({ style: 'fetch', status: 200, body: 'Hello from fnctl!\n' });
    expect(await invoke(pkg, { query: 'name=Ada' })).toMatchObject({ body: 'Hello, Ada!\n' });
  });

  it('lambda.mjs: Lambda style with the 2.0 event', async () => {
    const pkg = await pack(path.join(examples, 'lambda.mjs'));
    expect(pkg.name).toBe('lambda');
    const res = await invoke(pkg, { method: 'POST', path: '/orders/7', query: 'x=1' });
    expect(res.style).toBe('lambda');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ path: '/orders/7', query: { x: '1' }, method: 'POST' });
  });

  it('hono-app/: a Hono app from a folder, hono resolved upward', async () => {
    const pkg = await pack(path.join(examples, 'hono-app'));
    expect(pkg.name).toBe('hono-app');
    expect(pkg.entry).toBe(path.join(examples, 'hono-app/index.ts'));
    expect(pkg.sourceBytes).toBeGreaterThan(10_000); // hono itself is counted as the function's
    expect(JSON.parse((await invoke(pkg, { path: '/users/2' })).body)).toEqual({ id: 2, name: 'Grace Hopper' });
    const echo = await invoke(pkg, { method: 'POST', path: '/echo', body: '{"a":1}' });
    expect(JSON.parse(echo.body)).toMatchObject({ method: 'POST', body: { a: 1 } });
    expect((await invoke(pkg, { path: '/users/99' })).status).toBe(404);
  });

  it('heavy-init.js: init builds the table once, the handler looks keys up', async () => {
    const pkg = await pack(path.join(examples, 'heavy-init.js'));
    const res = JSON.parse((await invoke(pkg, { query: 'key=123' })).body);
    expect(res).toMatchObject({ key: 123, entries: 400_000 });
    expect(res.value).toMatch(/^[0-9a-f]{8}$/);
    expect(res.initMs).toBeGreaterThan(50);
  });
});

describe('packageFunction: shapes of functions', () => {
  it('a TypeScript file', async () => {
    const pkg = await pack(path.join(fixtures, 'ts-fn.ts'));
    expect(pkg.name).toBe('ts-fn');
    expect(JSON.parse((await invoke(pkg, { path: '/p' })).body)).toEqual({ message: 'hello from typescript', path: '/p' });
  });

  it('a CommonJS Lambda handler', async () => {
    const pkg = await pack(path.join(fixtures, 'lambda.cjs'));
    expect(await invoke(pkg, { path: '/c' })).toEqual({ style: 'lambda', status: 200, body: '{"style":"lambda-cjs","path":"/c"}' });
  });

  it('a folder with its own node_modules, package.json main and fnctl.json', async () => {
    const pkg = await pack(path.join(fixtures, 'with-deps'));
    expect(pkg.name).toBe('with-deps'); // "@acme/With-Deps": scope dropped, lower-cased
    expect(pkg.entry).toBe(path.join(fixtures, 'with-deps/main.js'));
    expect(pkg.settings).toEqual({ memory: 256, timeout: 5, env: { GREETING: 'hi' } });
    expect(JSON.parse((await invoke(pkg, { query: 'n=42' })).body)).toEqual({ padded: '00042' });
  });

  it('a folder whose package.json exports "." with conditions', async () => {
    const pkg = await pack(path.join(fixtures, 'scoped'));
    expect(pkg.name).toBe('my-service');
    expect(pkg.entry).toBe(path.join(fixtures, 'scoped/src/app.mts'));
    expect((await invoke(pkg)).body).toBe('scoped');
  });

  it('a folder with only index.js, named after the folder', async () => {
    const dir = path.join(work, 'My Folder');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'index.js'), 'export default { fetch: () => new Response("idx") };\n');
    const pkg = await pack(dir);
    expect(pkg.name).toBe('my-folder');
    expect((await invoke(pkg)).body).toBe('idx');
  });

  it('a module without a handler still packages: init reports it', async () => {
    const pkg = await pack(path.join(fixtures, 'no-handler.js'));
    expect((await invoke(pkg)).body).toBe('exports: notAHandler');
  });

  it('stack traces point at the function\'s own file and line', async () => {
    const pkg = await pack(path.join(fixtures, 'throws'));
    const res = await invoke(pkg);
    expect(res.style).toBe('error');
    expect(res.body).toContain('boom from the function');
    expect(res.body).toMatch(/at fail \(\/fn\/index\.js:3:9\)/);
    expect(res.body).toMatch(/at handler \(\/fn\/index\.js:7:3\)/);
  });

  it('reports sizes, time, warnings and progress', async () => {
    const progress: string[] = [];
    const pkg = await pack(path.join(examples, 'hello.js'), { onProgress: (m) => progress.push(m) });
    expect(pkg.bundleBytes).toBe(pkg.bundle.length);
    expect(pkg.sourceBytes).toBeGreaterThan(100);
    expect(pkg.sourceBytes).toBeLessThan(2000); // the runtime is not counted as the function's
    expect(pkg.buildMs).toBeGreaterThanOrEqual(0);
    expect(pkg.warnings).toEqual([]);
    expect(progress[0]).toMatch(/^bundling .*hello\.js$/);
    expect(progress[1]).toMatch(/^bundled \d+(\.\d)? kB in \d+ ms$/);
  });

  it('is deterministic: the same source gives the same bytes', async () => {
    const a = await pack(path.join(examples, 'hono-app'));
    const b = await pack(path.join(examples, 'hono-app'));
    expect(a.bundle.equals(b.bundle)).toBe(true);
  });

  it('passes esbuild warnings on, one line each', async () => {
    const file = path.join(work, 'warns.js');
    writeFileSync(file, 'const o = { a: 1, a: 2 };\nexport const handler = async () => o;\n');
    const pkg = await pack(file);
    expect(pkg.warnings).toEqual([expect.stringMatching(/warns\.js:1:\d+: Duplicate key "a" in object literal$/)]);
  });

  it('warns when a dependency loads a native addon at run time, and still bundles it', async () => {
    const dir = path.join(work, 'addon-loader');
    mkdirSync(path.join(dir, 'node_modules/bindings'), { recursive: true });
    mkdirSync(path.join(dir, 'node_modules/maybe-native'), { recursive: true });
    writeFileSync(path.join(dir, 'node_modules/bindings/index.js'), 'module.exports = () => { throw new Error("no addon"); };\n');
    writeFileSync(
      path.join(dir, 'node_modules/maybe-native/index.js'),
      'let impl;\ntry { impl = require("bindings")("x"); } catch { impl = { ok: () => "js fallback" }; }\nmodule.exports = impl;\n',
    );
    writeFileSync(path.join(dir, 'index.js'), 'const m = require("maybe-native");\nexports.handler = async () => m.ok();\n');
    const pkg = await pack(dir);
    expect(pkg.warnings).toEqual([expect.stringMatching(/maybe-native loads a native addon through bindings/)]);
    expect((await invoke(pkg)).body).toBe('"js fallback"');
  });
});

describe('packageFunction: failures are one clear line', () => {
  it('a syntax error: file:line:col and esbuild\'s text', async () => {
    const err = await failure(path.join(fixtures, 'syntax-error.js'));
    expect(err.code).toBe('INVALID_BUNDLE');
    expect(err.message).toBe('test/fixtures/functions/syntax-error.js:4:3: Expected ")" but found "}"');
    expect(err.message).not.toContain('\n');
  });

  it('a missing file or folder', async () => {
    const err = await failure('test/fixtures/functions/nope.js');
    expect(err.code).toBe('INVALID_BUNDLE');
    expect(err.message).toBe('no such file or folder: test/fixtures/functions/nope.js');
  });

  it('an unsupported extension', async () => {
    const err = await failure(path.join(fixtures, 'unsupported.py'));
    expect(err.message).toMatch(/^unsupported file type "\.py": .*unsupported\.py; expected \.js, \.mjs, \.cjs, \.ts, \.mts, \.cts$/);
  });

  it('a folder without an entry', async () => {
    const err = await failure(path.join(fixtures, 'no-entry'));
    expect(err.message).toMatch(/^no entry in .*no-entry: add "main" to its package\.json or an index\.ts \/ index\.js file$/);
  });

  it('a package.json main that does not exist', async () => {
    const dir = path.join(work, 'bad-main');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'package.json'), '{"name":"bad-main","main":"dist/server.js"}');
    const err = await failure(dir);
    expect(err.message).toMatch(/bad-main\/package\.json: main "dist\/server\.js" does not exist$/);
  });

  it('an import that cannot be resolved', async () => {
    const err = await failure(path.join(fixtures, 'missing-dep.js'));
    expect(err.message).toBe(
      "cannot resolve 'not-installed-anywhere' from test/fixtures/functions/missing-dep.js: install it in the function's folder",
    );
    expect(err.details?.errors).toEqual([expect.stringMatching(/missing-dep\.js:1:\d+: Could not resolve/)]);
  });

  it('top-level await', async () => {
    const err = await failure(path.join(fixtures, 'tla'));
    expect(err.code).toBe('INVALID_BUNDLE');
    expect(err.message).toMatch(/^top-level await is not supported \(test\/fixtures\/functions\/tla\/index\.mjs:1:16\)/);
  });

  it('a native addon', async () => {
    const err = await failure(path.join(fixtures, 'native-addon'));
    expect(err.code).toBe('INVALID_BUNDLE');
    expect(err.message).toMatch(/^native addon fake-addon cannot be bundled/);
  });

  it('an unknown key in fnctl.json, naming the file', async () => {
    const err = await failure(path.join(fixtures, 'bad-settings'));
    expect(err.code).toBe('INVALID_SETTING');
    expect(err.message).toBe('test/fixtures/functions/bad-settings/fnctl.json: unknown setting: memroy');
  });

  it('an fnctl.json that is not JSON', async () => {
    const dir = path.join(work, 'bad-json');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'index.js'), 'export const handler = () => 1;\n');
    writeFileSync(path.join(dir, 'fnctl.json'), '{ memory: 256 }');
    const err = await failure(dir);
    expect(err.code).toBe('INVALID_SETTING');
    expect(err.message).toMatch(/bad-json\/fnctl\.json: invalid JSON: /);
  });

  it('a bundle over the size limit', async () => {
    const err = await failure(path.join(examples, 'hello.js'), { maxBundleBytes: 1000 });
    expect(err.message).toMatch(/^bundle of .*hello\.js is \d+\.\d kB, over the limit of 1\.0 kB$/);
  });
});

describe('default names', () => {
  it.each([
    ['hello', 'hello'],
    ['Hello World', 'hello-world'],
    ['my.service.v2', 'my-service-v2'],
    ['__init__', 'init__'],
    ['a'.repeat(80), 'a'.repeat(63)],
    ['日本', 'function'],
  ])('%j → %j', (raw, name) => {
    expect(defaultName(raw)).toBe(name);
  });
});

describe('the real guest runtime', () => {
  it('is found next to this module when running from source', () => {
    if (!existsSync(realRuntime)) return; // being written; the next test covers it once it exists
    expect(guestRuntimePath()).toBe(realRuntime);
  });

  it.skipIf(!existsSync(realRuntime))('bundles with the function into one CommonJS file', async () => {
    const pkg = await packageFunction(path.join(examples, 'hello.js'));
    const text = pkg.bundle.toString('utf8');
    expect(text).toContain('startGuest');
    expect(text).toContain('Hello from fnctl!');
    expect(text).toMatch(/\/\/# sourceMappingURL=data:application\/json;base64,/);
    expect(pkg.sourceBytes).toBeLessThan(2000);
  });
});
