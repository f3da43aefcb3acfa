// Packaging: turns a user's file or folder into ONE CommonJS file (guest runtime + function) with
// esbuild. One file because a V8 startup snapshot can only be built from a single entry on Node 20,
// and CommonJS because the snapshot builder cannot run ESM. Every failure is one line for the user.
import { existsSync, readFileSync, statSync, type Stats } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { FnError } from '../core/errors.js';
import { MiB } from '../core/config.js';
import { parsePartialSettings, type Settings } from './settings.js';

export interface PackagedFunction {
  /** The single CommonJS file: guest runtime, function and its dependencies, with an inline source map. */
  bundle: Buffer;
  /** The default function name (made from the file, package or folder name). */
  name: string;
  /** Absolute path of the user's entry module. */
  entry: string;
  /** Settings from the folder's fnctl.json, when there is one. */
  settings: Partial<Settings> | undefined;
  /** Bytes of the user's source files that went into the bundle (not the guest runtime). */
  sourceBytes: number;
  bundleBytes: number;
  buildMs: number;
  /** esbuild warnings, one line each ("file:line:col: text"). */
  warnings: string[];
}

export interface PackageOptions {
  onProgress?: (message: string) => void;
  /** The guest runtime module to bundle with the function; tests pass a stand-in. */
  runtimeEntry?: string;
  /** Largest bundle accepted (default 256 MiB, the platform's maxBundleBytes). */
  maxBundleBytes?: number;
}

export const SOURCE_EXTENSIONS = ['.js', '.mjs', '.cjs', '.ts', '.mts', '.cts'] as const;
const INDEX_FILES = ['index.ts', 'index.js', 'index.mjs', 'index.cjs', 'index.mts', 'index.cts'];
/** Loaders of native addons: they find a .node file at run time, which the bundle will not hold. */
const ADDON_LOADERS = /^(bindings|node-gyp-build|node-gyp-build-optional-packages|@mapbox\/node-pre-gyp|node-pre-gyp)$/;

export async function packageFunction(target: string, options: PackageOptions = {}): Promise<PackagedFunction> {
  const started = performance.now();
  const source = locate(target);
  const runtime = options.runtimeEntry ? path.resolve(options.runtimeEntry) : guestRuntimePath();
  const maxBytes = options.maxBundleBytes ?? 256 * MiB;
  options.onProgress?.(`bundling ${display(source.entry)}`);

  let result: esbuild.BuildResult<{ write: false; metafile: true }>;
  try {
    result = await esbuild.build({
      stdin: {
        // The stub is the bundle's entry: the runtime starts, given the user's module namespace.
        contents:
          `import { startGuest } from ${JSON.stringify(runtime)};\n` +
          `import * as fn from ${JSON.stringify(source.entry)};\n` +
          `startGuest(fn);\n`,
        resolveDir: source.root,
        sourcefile: 'fnctl-entry.js',
        loader: 'js',
      },
      // Not written: it makes the source map's paths relative to the function's folder, and the
      // source root puts that folder at /fn (as Lambda's /var/task), wherever the bundle is
      // stored. Stack traces then read "/fn/index.js:3:9", the same on every machine, and the
      // bundle's bytes (its content hash) do not depend on where the user keeps the code.
      outfile: path.join(source.root, 'fnctl-bundle.cjs'),
      sourceRoot: '/fn/',
      bundle: true,
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      write: false,
      metafile: true,
      sourcemap: 'inline',
      // Stack traces need line mappings, not the sources: leaving them out keeps bundles (and
      // the snapshots built from them) about half the size.
      sourcesContent: false,
      keepNames: true,
      logLevel: 'silent',
      absWorkingDir: process.cwd(),
      plugins: [nativeAddonGuard()],
    });
  } catch (err) {
    throw buildError(err);
  }

  const out = result.outputFiles[0];
  if (!out) throw new FnError('INTERNAL', 'esbuild produced no output');
  const bundle = Buffer.from(out.contents.buffer, out.contents.byteOffset, out.contents.byteLength);
  if (bundle.length > maxBytes) {
    throw new FnError(
      'INVALID_BUNDLE',
      `bundle of ${display(source.entry)} is ${formatBytes(bundle.length)}, over the limit of ${formatBytes(maxBytes)}`,
      { details: { bundleBytes: bundle.length, maxBundleBytes: maxBytes } },
    );
  }
  const buildMs = Math.round(performance.now() - started);
  options.onProgress?.(`bundled ${formatBytes(bundle.length)} in ${buildMs} ms`);
  return {
    bundle,
    name: source.name,
    entry: source.entry,
    settings: source.settings,
    sourceBytes: userSourceBytes(result.metafile, source.entry),
    bundleBytes: bundle.length,
    buildMs,
    warnings: result.warnings.map(formatMessage),
  };
}

/** The guest runtime next to this module: compiled .js under dist/, else the .ts source (tests). */
export function guestRuntimePath(): string {
  for (const ext of ['.js', '.ts']) {
    const candidate = fileURLToPath(new URL(`../microvm/guest/runtime${ext}`, import.meta.url));
    if (existsSync(candidate)) return candidate;
  }
  throw new FnError('INTERNAL', 'the guest runtime (microvm/guest/runtime) was not found: run `npm run build`');
}

interface Source {
  entry: string;
  /** The function's folder: the PATH folder, or the folder of the PATH file. */
  root: string;
  name: string;
  settings: Partial<Settings> | undefined;
}

/** Find the entry, default name and fnctl.json settings of a file or folder. */
function locate(target: string): Source {
  const abs = path.resolve(target);
  let stats: Stats;
  try {
    stats = statSync(abs);
  } catch {
    throw new FnError('INVALID_BUNDLE', `no such file or folder: ${target}`);
  }
  if (stats.isFile()) {
    checkExtension(abs);
    return {
      entry: abs,
      root: path.dirname(abs),
      name: defaultName(path.basename(abs, path.extname(abs))),
      settings: undefined,
    };
  }
  if (!stats.isDirectory()) throw new FnError('INVALID_BUNDLE', `${target} is neither a file nor a folder`);

  const pkg = readPackageJson(abs);
  const entry = folderEntry(abs, pkg);
  const pkgName = typeof pkg?.name === 'string' ? pkg.name.replace(/^@[^/]*\//, '') : '';
  return {
    entry,
    root: abs,
    name: defaultName(pkgName || path.basename(abs)),
    settings: readFnctlJson(abs),
  };
}

function checkExtension(file: string): void {
  const ext = path.extname(file);
  if (!(SOURCE_EXTENSIONS as readonly string[]).includes(ext)) {
    throw new FnError(
      'INVALID_BUNDLE',
      `unsupported file type ${ext ? `"${ext}"` : '(no extension)'}: ${display(file)}; expected ${SOURCE_EXTENSIONS.join(', ')}`,
    );
  }
}

type PackageJson = { name?: unknown; main?: unknown; module?: unknown; exports?: unknown };

function readPackageJson(dir: string): PackageJson | undefined {
  const file = path.join(dir, 'package.json');
  if (!existsSync(file)) return undefined;
  const value = readJson(file, 'INVALID_BUNDLE');
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new FnError('INVALID_BUNDLE', `${display(file)}: must be a JSON object`);
  }
  return value as PackageJson;
}

/** package.json exports "." (string, or its import/node/default condition), module, main; else index.*. */
function folderEntry(dir: string, pkg: PackageJson | undefined): string {
  const declared: [string, unknown][] = [];
  if (pkg) {
    const exp = pkg.exports;
    const dot = typeof exp === 'string' ? exp : isObject(exp) ? exp['.'] : undefined;
    const fromExports = typeof dot === 'string' ? dot : isObject(dot) ? (dot.import ?? dot.node ?? dot.default ?? dot.require) : undefined;
    declared.push(['exports "."', fromExports], ['module', pkg.module], ['main', pkg.main]);
  }
  for (const [field, value] of declared) {
    if (typeof value !== 'string' || value === '') continue;
    const file = path.resolve(dir, value);
    if (!existsSync(file) || !statSync(file).isFile()) {
      throw new FnError('INVALID_BUNDLE', `${display(path.join(dir, 'package.json'))}: ${field} "${value}" does not exist`);
    }
    return file;
  }
  for (const index of INDEX_FILES) {
    const file = path.join(dir, index);
    if (existsSync(file)) return file;
  }
  throw new FnError(
    'INVALID_BUNDLE',
    `no entry in ${display(dir)}: add "main" to its package.json or an index.ts / index.js file`,
  );
}

function readFnctlJson(dir: string): Partial<Settings> | undefined {
  const file = path.join(dir, 'fnctl.json');
  if (!existsSync(file)) return undefined;
  return parsePartialSettings(readJson(file, 'INVALID_SETTING'), display(file));
}

function readJson(file: string, code: 'INVALID_BUNDLE' | 'INVALID_SETTING'): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new FnError(code, `${display(file)}: invalid JSON: ${(err as Error).message}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Lower-case and squeeze into the name rule where that is trivial; "function" when nothing is left. */
export function defaultName(raw: string): string {
  const name = raw
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-')
    .replace(/^[-_]+/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return name || 'function';
}

/**
 * A .node file fails the build with a clear message. A native-addon loader only warns: packages
 * such as bufferutil (optional for ws) are required inside try/catch and have a JS fallback.
 */
function nativeAddonGuard(): esbuild.Plugin {
  return {
    name: 'fnctl-native-addons',
    setup(build) {
      build.onResolve({ filter: /\.node$/ }, (args) => ({
        errors: [{ text: nativeAddonMessage(packageOf(args.importer) ?? args.path) }],
      }));
      build.onResolve({ filter: ADDON_LOADERS }, (args) => ({
        warnings: [{ text: `${packageOf(args.importer) ?? args.importer} loads a native addon through ${args.path}: it will fail at run time unless it has a JavaScript fallback` }],
      }));
    },
  };
}

function nativeAddonMessage(what: string): string {
  return `native addon ${what} cannot be bundled: a function must be plain JavaScript (use a pure-JS or WebAssembly alternative)`;
}

/** "pkg" or "@scope/pkg" of the innermost node_modules folder in a path. */
function packageOf(file: string): string | undefined {
  const m = /.*node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)/.exec(file);
  return m?.[1]?.replace(/\\/g, '/');
}

/** One line for the user from an esbuild failure; every message kept in details. */
function buildError(err: unknown): FnError {
  const messages = (err as { errors?: esbuild.Message[] }).errors;
  if (!Array.isArray(messages) || messages.length === 0) {
    return new FnError('INTERNAL', `bundling failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
  const first = messages[0]!;
  const where = first.location ? `${first.location.file}:${first.location.line}:${first.location.column + 1}` : '';
  const details = { errors: messages.map(formatMessage) };
  const unresolved = /^Could not resolve "(.+)"$/.exec(first.text);
  const noLoader = /^No loader is configured for "\.node" files: (.+)$/.exec(first.text);
  let line: string;
  if (/top-level await/i.test(first.text)) {
    line = `top-level await is not supported (${where}): a function is bundled as CommonJS and snapshotted after init; move the awaited work into the handler or a lazily awaited promise`;
  } else if (unresolved) {
    line = `cannot resolve '${unresolved[1]}' from ${first.location?.file ?? 'the function'}: install it in the function's folder`;
  } else if (noLoader) {
    line = nativeAddonMessage(packageOf(noLoader[1]!) ?? noLoader[1]!);
  } else if (first.pluginName === 'fnctl-native-addons') {
    line = first.text;
  } else {
    line = where ? `${where}: ${first.text}` : first.text;
  }
  if (messages.length > 1) line += ` (and ${messages.length - 1} more error${messages.length > 2 ? 's' : ''})`;
  return new FnError('INVALID_BUNDLE', line, { details });
}

function formatMessage(m: esbuild.Message): string {
  const loc = m.location;
  return loc ? `${loc.file}:${loc.line}:${loc.column + 1}: ${m.text}` : m.text;
}

/** Bytes of the inputs reachable from the user's entry, so the runtime is not counted. */
function userSourceBytes(meta: esbuild.Metafile, entry: string): number {
  const byAbs = new Map<string, string>();
  for (const key of Object.keys(meta.inputs)) byAbs.set(path.resolve(key), key);
  const start = byAbs.get(entry);
  if (!start) return 0;
  const seen = new Set<string>([start]);
  const queue = [start];
  let bytes = 0;
  while (queue.length > 0) {
    const input = meta.inputs[queue.pop()!];
    if (!input) continue;
    bytes += input.bytes;
    for (const imp of input.imports) {
      if (imp.external || seen.has(imp.path)) continue;
      seen.add(imp.path);
      queue.push(imp.path);
    }
  }
  return bytes;
}

/** A path as the user would type it: relative to the working folder when inside it. */
function display(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}

export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  if (n < 1000 * 1000) return `${(n / 1000).toFixed(1)} kB`;
  return `${(n / 1000 / 1000).toFixed(1)} MB`;
}
