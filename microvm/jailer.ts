// The jailer: wraps a guest's command so that it runs the way Firecracker's jailer runs a VMM,
// in namespaces, on a read-only root that holds only what the guest needs, in a cgroup with
// its limits, with rlimits, as an unprivileged user. Three levels, the strongest this machine has:
//
// - bubblewrap: `sh` (rlimits) → `bwrap` as root (pid, mount, ipc, uts, cgroup and, for network
//   "none", net namespaces; a tmpfs root with /usr, five device nodes, the bundle at
//   /fn/bundle.cjs, a size-bounded /tmp, /etc/ssl and DNS files only with network "host", then
//   remounted read-only; all capabilities dropped but CAP_SETUID/SETGID; no_new_privs) → node, whose
//   `--require` preload waits for its cgroup and becomes a uid/gid of the guest's own (one per
//   microVM, from a range no user has) before any function code.
//   bwrap runs as root so that it can bind files whose folders are 0700 (the data folder); the
//   guest never has root. Non-node commands (the snapshot builder: --build-snapshot ignores
//   --require) drop through `setpriv` instead.
// - unshare: the same namespaces from util-linux `unshare`, a root assembled by `mount -a` from a
//   per-guest fstab on a skeleton folder, `chroot`, `setpriv`. No cgroup namespace, host hostname.
// - none: the guest runs as the platform's user on the host's filesystem; only cgroups and
//   rlimits apply. The jailer says so in `warnings` (and `fnctl doctor` does).
//
// A guest is in its cgroup before any of its code runs. Moving a process into a cgroup waits for
// an RCU grace period (~10 ms on this machine under load), so for node guests in bubblewrap the
// host does it off its event loop while node boots, and the preload holds the function back until
// /proc/self/cgroup shows the move. Everything else joins synchronously: the jail's first process
// (`sh`) writes its own pid into cgroup.procs and then execs the rest.
import {
  chmodSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CgroupManager, startTimeOf, type CgroupManagerOptions, type DestroyReport, type SweepReport, type VmCgroup } from './cgroups.js';
import { detectIsolation, type IsolationReport, type JailLevel } from './isolation.js';
import { guestNodeFlags } from './microvm.js';
import type { MicroVmConfig } from './types.js';

export type { JailLevel };

export interface SpawnSpec {
  command: string;
  args: string[];
}

export interface JailerOptions {
  /** 'auto' (default): the strongest level available. A weaker one may be asked for; a stronger one falls back with a warning. */
  level?: JailLevel | 'auto';
  /** false: no cgroups even where they are available. */
  cgroups?: boolean | CgroupManagerOptions;
  /** pids.max per microVM (processes and threads): a fork bomb stops there. Default 64. */
  pidsMax?: number;
  /** RLIMIT_NOFILE (soft and hard) of the guest. Default 1024. */
  nofile?: number;
  /** Size bound of the guest's private /tmp (a tmpfs, charged to its memory cgroup). Default 64 MiB. */
  tmpMib?: number;
  /**
   * uid (= gid) of every guest when the platform is root. Default: a uid of its own per microVM,
   * round robin over `uidCount` ids from `uidBase`, so that nothing the kernel keeps per user (key
   * rings, inotify and mqueue quotas, peer credentials) is shared between two guests.
   */
  uid?: number;
  /** First uid of the per-microVM range. Default 0x7FFF0000 (2147418112): above systemd-nspawn's and the usual subuid ranges. */
  uidBase?: number;
  /** Size of the range. Default 65536. */
  uidCount?: number;
  /** Snapshot builds get this much memory on top of the function's (serialising the heap needs room). Default 64 MiB. */
  buildExtraMib?: number;
  /**
   * Move a node guest into its cgroup from the host while node boots, instead of in the jail's
   * first process (see buildJailed). Default true; false joins synchronously, before bwrap runs.
   */
  asyncJoin?: boolean;
}

/** A bind into the guest: a host file or folder at /fn/<name> (read-only) or elsewhere. */
export interface Bind {
  host: string;
  /** Path inside the jail; default /fn/<basename of host>. */
  jail?: string;
  /** Writable (only for the snapshot builder's output file). */
  rw?: boolean;
}

/** What to run, and the hooks the owner of the process calls around its life. */
export interface JailedCommand extends SpawnSpec {
  level: JailLevel;
  /** The uid (and gid) the guest runs as, or undefined when it keeps the platform's. */
  uid: number | undefined;
  /** The group of this guest, when cgroups are used (created by prepare()). */
  cgroup: VmCgroup | undefined;
  /** Host path → path inside the jail, for every bind. */
  paths: Record<string, string>;
  /**
   * Create the cgroup with its limits and the per-guest files (synchronous, ~0.2 ms, so that a
   * synchronous spawn hook can call it), and start placing the guest into its cgroup once it is
   * spawned. Must run before spawning: the guest refuses to start (exit 125) when it cannot get
   * into its cgroup. Throws when the jail cannot be set up (e.g. a bundle the guest's uid cannot read).
   */
  prepare(): void;
  /**
   * The pid that was spawned, right after spawn: spares the jail finding it through its pid file
   * (a few ms sooner), and serves the signal fallbacks of pause and kill.
   */
  attach(pid: number): void;
  /** Give the guest the least CPU weight (while it is held ahead of its request), or its own back. No-op without cgroups. */
  background(on: boolean): void;
  /** Stop every process of the guest (freezer, else SIGSTOP each). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** SIGKILL everything of the guest now (cgroup.kill where there is one). Synchronous. */
  kill(): void;
  /** The kernel OOM-killed something in this guest's memory cgroup. Read it before cleanup. */
  oomKilled(): boolean;
  /** After the process exited: kill leftovers, wait until the cgroup is empty, remove it and the per-guest files. Never rejects. */
  cleanup(): Promise<DestroyReport | undefined>;
}

export interface Jailer {
  level: JailLevel;
  /** What this jailer cannot enforce on this machine, one sentence each. */
  warnings: string[];
  report: IsolationReport;
  cgroups: CgroupManager | undefined;
  /** Wrap a guest command for `config`: the bundle is bound at /fn/bundle.cjs and args are rewritten. */
  wrap(config: MicroVmConfig, guest: SpawnSpec, extraRoBinds?: (string | Bind)[]): JailedCommand;
  /**
   * Wrap the snapshot builder's command: the bundle read-only at /fn/bundle.cjs, the output file
   * (created by the jail, mode 0666 until the store renames it) writable at /out/<name>, network none.
   */
  wrapBuild(plain: SpawnSpec, input: { id?: string; bundlePath: string; outPath: string; memoryMib: number; vcpus?: number }): JailedCommand;
  /** Remove cgroups and jail folders left by platforms that crashed. Call once at startup. */
  sweep(): Promise<SweepReport | undefined>;
  /** Remove every group still alive and this jailer's folders (platform shutdown). */
  close(): Promise<void>;
  /** One line per fact, for the platform's startup log. */
  describe(): string[];
}

/** The plain guest command (what MicroVm runs without a jail). */
export function plainGuestCommand(config: MicroVmConfig): SpawnSpec {
  return { command: process.execPath, args: [...guestNodeFlags(config), config.rootfs.bundlePath] };
}

const FN_DIR = '/fn';
const BUNDLE_IN_JAIL = '/fn/bundle.cjs';
const OUT_DIR = '/out';
const DROP_IN_JAIL = '/.fnctl-jail.cjs';
/**
 * Where glibc's malloc reads the transparent huge page mode and size. Without them it ignores the
 * guests' `glibc.malloc.hugetlb=1` (see microvm.ts): with no /sys in the jail, a jailed restore
 * of a 23 MB snapshot made no huge page at all (thp_fault_alloc in /proc/vmstat did not move).
 * The jail gets copies of these two files, read-only, and nothing else of /sys.
 */
const THP_DIR = '/sys/kernel/mm/transparent_hugepage';
const THP_FILES = ['enabled', 'hpage_pmd_size'];
const JOIN_ENV = 'FNCTL_JAIL_CGROUP';
const UID_ENV = 'FNCTL_JAIL_UID';
const PLACE_DEADLINE_MS = 15_000;

/**
 * The preload of node guests (`--require`, before the bundle or the snapshot's main). bwrap starts
 * node as root with only CAP_SETUID/CAP_SETGID. First it waits until the host has moved it into its
 * cgroup (FNCTL_JAIL_CGROUP names the group and the /proc/self/cgroup lines to check), then it
 * becomes the guest's uid and gid (FNCTL_JAIL_UID): setuid from root drops the two capabilities,
 * and bwrap set no_new_privs. Both variables are gone before the function runs. Children forked by
 * the function inherit --require but not the variables: they do nothing.
 */
// String.raw: the backslashes below belong to the generated JavaScript.
const PRELOAD_SOURCE = String.raw`'use strict';
// fnctl jail (microvm/jailer.ts): runs before any function code.
const spec = process.env.${JOIN_ENV};
const uid = process.env.${UID_ENV};
delete process.env.${JOIN_ENV};
delete process.env.${UID_ENV};
if (spec !== undefined) {
  const fs = require('fs');
  const [name, list] = spec.split(';');
  const want = list.split('|');
  const placed = () => {
    const paths = new Map();
    for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const m = /^\d+:([^:]*):(.*)$/.exec(line);
      if (m) paths.set(m[1].split(',').sort().join(','), m[2]);
    }
    return want.every((h) => (paths.get(h) || '').endsWith('/' + name));
  };
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + ${PLACE_DEADLINE_MS};
  while (!placed()) {
    if (Date.now() > deadline) {
      process.stderr.write('fnctl-jail: the host did not move this guest into its cgroup in time\n');
      process.exit(125);
    }
    Atomics.wait(nap, 0, 0, 1);
  }
}
if (uid !== undefined && process.getuid() === 0) {
  process.setgroups([]);
  process.setgid(Number(uid));
  process.setuid(Number(uid));
  if (process.getuid() === 0 || process.geteuid() === 0) throw new Error('fnctl jail: could not drop root');
}
`;

function readPid(file: string): number | undefined {
  try {
    const t = readFileSync(file, 'utf8');
    // "echo $$ >" writes "<pid>\n" in one write; before it, the file may be empty.
    return t.endsWith('\n') ? Number(t) : undefined;
  } catch {
    return undefined;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function isNode(command: string): boolean {
  return command === process.execPath || basename(command) === 'node';
}

function q(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

function safeName(id: string): string {
  return id.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 100) || 'vm';
}

export function createJailer(report: IsolationReport = detectIsolation(), options: JailerOptions = {}): Jailer {
  const warnings: string[] = [];
  const root = report.root;
  const want = options.level ?? 'auto';
  const unshareOk = report.level !== 'none' && report.tools.unshare.ok && !!report.tools.mount.path && !!report.tools.chroot.path;
  let level: JailLevel;
  if (want === 'auto') level = report.level;
  else if (want === 'bubblewrap' && !report.tools.bwrap.works) {
    level = unshareOk ? 'unshare' : 'none';
    warnings.push(`bubblewrap was asked for but is unavailable (${report.tools.bwrap.error ?? 'not working'}): using ${level}`);
  } else if (want === 'unshare' && !unshareOk) {
    level = 'none';
    warnings.push(`the unshare jail was asked for but is unavailable (${report.tools.unshare.error ?? 'needs root, unshare, mount and chroot'}): using none`);
  } else level = want;

  const pidsMax = options.pidsMax ?? 64;
  const nofile = options.nofile ?? 1024;
  const tmpMib = options.tmpMib ?? 64;
  const uidBase = options.uidBase ?? 0x7fff0000;
  const uidCount = options.uidCount ?? 65536;
  let uidNext = 0;
  const nextUid = (): number => options.uid ?? uidBase + (uidNext++ % uidCount);
  const setpriv = report.tools.setpriv.path;
  // Drop to an unprivileged uid inside the jail: only root can, and only with setpriv.
  const dropUid = root && level !== 'none' && !!setpriv;
  const cgroups = options.cgroups === false ? undefined : CgroupManager.create(report, options.cgroups === true ? {} : (options.cgroups ?? {}));
  const owner = `${process.pid}-${startTimeOf(process.pid) ?? '0'}`;
  let workDir: string | undefined;

  if (level === 'none') {
    warnings.push(
      'no jail: guests run as the platform user (uid ' + report.uid + ') on the host filesystem and network, and can read what that user can (the data folder, the token, other functions)',
    );
  } else if (level === 'unshare') {
    warnings.push('unshare jail (bubblewrap is unavailable): no cgroup namespace, the guest sees the host hostname');
  }
  if (level !== 'none' && root && !setpriv) warnings.push('setpriv is missing: guests run as root without capabilities instead of an unprivileged uid');
  if (!cgroups) warnings.push('no usable cgroups: memory is bounded only by V8 heap flags, CPU and pids are not bounded');
  else {
    const plan = cgroups.plan;
    if (!plan.memory) warnings.push('no memory cgroup: memory is bounded only by V8 heap flags');
    if (!plan.cpu) warnings.push('no cpu cgroup: vcpus is not enforced');
    if (!plan.pids) warnings.push('no pids cgroup: a fork bomb is not bounded');
    if (plan.freeze === 'signal') warnings.push('no freezer: pause uses SIGSTOP/SIGCONT');
  }

  /** Folders and files under the platform's control: per-guest fstabs and the unshare skeleton. */
  function work(): string {
    if (workDir) return workDir;
    const preferred = join(tmpdir(), `fnctl-jail-${owner}`);
    try {
      mkdirSync(preferred, { mode: 0o700 });
      workDir = preferred;
    } catch {
      workDir = mkdtempSync(join(tmpdir(), `fnctl-jail-${owner}-`));
    }
    return workDir;
  }

  /** The read-only skeleton the unshare jail mounts into and chroots to (made once, shared). */
  let skeleton: string | undefined;
  function skel(): string {
    if (skeleton) return skeleton;
    const s = join(work(), 'root');
    mkdirSync(s, { mode: 0o755 });
    chmodSync(s, 0o755);
    for (const d of ['usr', 'fn', 'tmp', 'proc', 'dev', 'etc']) mkdirSync(join(s, d), { mode: 0o755 });
    for (const [link, how] of Object.entries(report.rootLinks)) {
      if ('symlink' in how) symlinkSync(how.symlink, join(s, link));
      else mkdirSync(join(s, link), { recursive: true, mode: 0o755 });
    }
    for (const d of report.node.extraDirs) mkdirSync(join(s, d), { recursive: true, mode: 0o755 });
    for (const dev of DEVICES) writeFileSync(join(s, 'dev', dev), '');
    symlinkSync('/proc/self/fd', join(s, 'dev', 'fd'));
    for (const [i, n] of ['stdin', 'stdout', 'stderr'].entries()) symlinkSync(`/proc/self/fd/${i}`, join(s, 'dev', n));
    for (const f of etcFiles('host')) {
      if (statSync(f).isDirectory()) mkdirSync(join(s, f), { recursive: true, mode: 0o755 });
      else writeFileSync(join(s, f), '');
    }
    const thp = thpCopy();
    if (thp) mkdirSync(join(s, THP_DIR), { recursive: true, mode: 0o755 });
    skeleton = s;
    return s;
  }

  /** A folder with copies of the host's THP_FILES, made once; undefined when the host has no THP. */
  let thpDir: string | null | undefined;
  function thpCopy(): string | undefined {
    if (thpDir !== undefined) return thpDir ?? undefined;
    thpDir = null;
    try {
      const texts = THP_FILES.map((f) => readFileSync(join(THP_DIR, f), 'utf8'));
      const d = join(work(), 'thp');
      mkdirSync(d, { recursive: true, mode: 0o755 });
      chmodSync(d, 0o755);
      THP_FILES.forEach((f, i) => writeFileSync(join(d, f), texts[i]!, { mode: 0o644 }));
      thpDir = d;
    } catch {
      // No THP on this host (or no /sys): glibc's setting then does nothing anyway.
    }
    return thpDir ?? undefined;
  }

  /** The preload a node guest runs first (see buildJailed): wait for its cgroup, then drop root. */
  let dropFile: string | undefined;
  function dropScript(): string {
    if (dropFile) return dropFile;
    const f = join(work(), 'jail-init.cjs');
    writeFileSync(f, PRELOAD_SOURCE, { mode: 0o644 });
    dropFile = f;
    return f;
  }

  function buildJailed(
    id: string,
    guest: SpawnSpec,
    binds: Bind[],
    net: 'none' | 'host',
    limits: { memoryMib: number; vcpus: number },
    createFiles: string[],
    opts: { forceSetpriv?: boolean } = {},
  ): JailedCommand {
    const name = safeName(id);
    const uid = nextUid();
    const gid = uid;
    const paths: Record<string, string> = {};
    for (const b of binds) paths[b.host] = b.jail ?? `${FN_DIR}/${basename(b.host)}`;
    const rewrite = (a: string): string => {
      if (paths[a] !== undefined) return paths[a]!;
      const eq = a.indexOf('=');
      if (eq > 0 && paths[a.slice(eq + 1)] !== undefined) return `${a.slice(0, eq + 1)}${paths[a.slice(eq + 1)]}`;
      return a;
    };
    const inner = level === 'none' ? { ...guest } : { command: guest.command, args: guest.args.map(rewrite) };
    const cg = cgroups?.group(name, { memoryMib: limits.memoryMib, vcpus: limits.vcpus, pidsMax });
    let fstab: string | undefined;

    let jailArgv: string[];
    // How the guest stops being root. A node guest does it itself, first thing: `--require` of a
    // small preload (setgroups, setgid, setuid) while bwrap leaves it only CAP_SETUID/SETGID; that
    // saves the ~1.5 ms exec of setpriv per boot. `--build-snapshot` ignores --require, and other
    // commands are not node: those go through setpriv.
    const preload = dropUid && level === 'bubblewrap' && !opts.forceSetpriv && isNode(inner.command);
    const privDrop = dropUid && !preload ? [setpriv!, `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--'] : [];
    if (preload) {
      binds = [...binds, { host: dropScript(), jail: DROP_IN_JAIL }];
      paths[binds[binds.length - 1]!.host] = DROP_IN_JAIL;
      inner.args = ['--require', DROP_IN_JAIL, ...inner.args];
    }
    // Joining a cgroup waits for an RCU grace period (measured ~12 ms on this 2-core machine under
    // load, per boot, in the critical path). With the preload, the host moves the guest instead,
    // off its event loop, while node boots; the preload holds the function back until the move is
    // done (it reads /proc/self/cgroup), so no function code ever runs outside its limits. Until
    // then only bwrap and node's own bootstrap run uncounted (their first ~10 MB stay charged to
    // the platform's memory cgroup).
    const asyncJoin = !!cg && preload && options.asyncJoin !== false;
    const env: Record<string, string> = {};
    if (preload) env[UID_ENV] = String(uid);
    if (asyncJoin) env[JOIN_ENV] = `${cg!.name};${cg!.hierarchies.join('|')}`;
    const pidFile = asyncJoin ? join(work(), `${name}.pid`) : undefined;
    if (level === 'bubblewrap') {
      const drop = !dropUid ? 'none' : preload ? 'preload' : 'setpriv';
      jailArgv = [report.tools.bwrap.path!, ...bwrapArgs(report, { net, hostname: name, binds, paths, tmpMib, root, drop, env, thp: thpCopy() }), ...privDrop, inner.command, ...inner.args];
    } else if (level === 'unshare') {
      fstab = join(work(), `${name}.fstab`);
      const s = skel();
      // The script runs as root inside the new namespaces: mount the root, then chroot and drop.
      const script = `${report.tools.mount.path} --all --fstab ${q(fstab)} || exit 125\nexec ${report.tools.chroot.path} ${q(s)} "$@"`;
      jailArgv = [
        report.tools.unshare.path!,
        '--pid', '--fork', '--kill-child', '--mount', '--ipc', '--uts', ...(net === 'none' ? ['--net'] : []), '--propagation', 'private',
        '--', '/bin/sh', '-c', script, 'fnctl-jail', ...privDrop, inner.command, ...inner.args,
      ];
    } else {
      jailArgv = [inner.command, ...inner.args];
    }

    // The prefix: join the cgroup (fail closed), create the writable output files, set rlimits.
    let prefix = '';
    if (pidFile) prefix += `echo $$ > ${q(pidFile)} || exit 125\n`;
    else if (cg) for (const f of cg.procsFiles) prefix += `echo $$ > ${q(f)} || { echo "fnctl-jail: cannot join cgroup ${f}" >&2; exit 125; }\n`;
    if (createFiles.length) prefix += `umask 0\n${createFiles.map((f) => `: > ${q(f)} || exit 125\n`).join('')}umask 022\n`;
    prefix += `ulimit -c 0\nulimit -n ${nofile}\nexec "$@"`;
    const command = '/bin/sh';
    const args = ['-c', prefix, 'fnctl-jail', ...jailArgv];

    let pid: number | undefined;
    let prepared = false;
    let cleaned: Promise<DestroyReport | undefined> | undefined;
    let stopped: number[] = [];
    let cancelled = false;
    let placing: Promise<void> | undefined;

    /** Find the jail's first process (attach() or its pid file), wait for its sandbox, move the tree in. */
    async function place(group: VmCgroup, file: string): Promise<void> {
      const deadline = Date.now() + PLACE_DEADLINE_MS;
      const late = (): boolean => cancelled || Date.now() > deadline;
      let root = pid;
      while (root === undefined) {
        root = pid ?? readPid(file);
        if (root !== undefined || late()) break;
        await sleep(1);
      }
      if (root === undefined) return;
      pid ??= root;
      // Only once bwrap has cloned the sandbox: the guest's cgroup namespace is rooted where bwrap
      // was then, so the preload sees "/…/<name>" (not "/") once it has been moved.
      while (childrenOf(root).length === 0) {
        if (late() || !existsSync(`/proc/${root}`)) return;
        await sleep(1);
      }
      for (let round = 0; round < 10 && !late(); round++) {
        const todo = tree(root).filter((p) => !group.holds(p));
        if (!todo.length) return;
        for (const p of todo) await group.join(p);
      }
    }
    const jailed: JailedCommand = {
      command,
      args,
      level,
      uid: dropUid ? uid : undefined,
      cgroup: cg,
      paths,
      prepare() {
        if (prepared) return;
        if (dropUid) {
          for (const b of binds) {
            if (b.rw) continue;
            const st = statSync(b.host);
            // The guest runs as a uid no file belongs to: it reads through "other" permission bits.
            if (st.isFile() && (st.mode & 0o004) === 0) throw new Error(`jail: ${b.host} is not world-readable (mode ${(st.mode & 0o777).toString(8)}): the guest runs as uid ${uid} and could not read it`);
          }
        }
        if (fstab) writeFileSync(fstab, unshareFstab(report, skel(), { net, binds, paths, tmpMib, thp: thpCopy() }), { mode: 0o600 });
        cg?.create();
        prepared = true;
        if (pidFile) {
          rmSync(pidFile, { force: true });
          // Errors (the group removed under us) end the placing; the preload then gives up, exit 125.
          placing = place(cg!, pidFile).catch(() => {});
        }
      },
      attach(p) {
        pid = p;
      },
      background(on) {
        cg?.background(on);
      },
      async pause() {
        if (cg?.canFreeze) return cg.freeze();
        stopped = pid === undefined ? [] : tree(pid);
        for (const p of stopped) signal(p, 'SIGSTOP');
      },
      async resume() {
        if (cg?.canFreeze) return cg.thaw();
        for (const p of stopped.reverse()) signal(p, 'SIGCONT');
        stopped = [];
      },
      kill() {
        if (cg) cg.kill();
        if (pid !== undefined) {
          // Without a cgroup the pid namespace ends with its init; the group kill covers 'none'.
          signal(-pid, 'SIGKILL');
        }
      },
      oomKilled() {
        return (cg?.oomKills() ?? 0) > 0;
      },
      cleanup() {
        cleaned ??= (async () => {
          cancelled = true;
          await placing;
          const report = cg && prepared ? await cg.destroy() : undefined;
          if (fstab) rmSync(fstab, { force: true });
          if (pidFile) rmSync(pidFile, { force: true });
          return report;
        })();
        return cleaned;
      },
    };
    return jailed;
  }

  const jailer: Jailer = {
    level,
    warnings,
    report,
    cgroups,
    wrap(config, guest, extraRoBinds = []) {
      const binds: Bind[] = [{ host: config.rootfs.bundlePath, jail: BUNDLE_IN_JAIL }, ...extraRoBinds.map((b) => (typeof b === 'string' ? { host: b } : b))];
      return buildJailed(config.id, guest, binds, config.network, { memoryMib: config.memoryMib, vcpus: config.vcpus }, []);
    },
    wrapBuild(plain, input) {
      const outName = basename(input.outPath);
      const binds: Bind[] = [
        { host: input.bundlePath, jail: BUNDLE_IN_JAIL },
        { host: input.outPath, jail: `${OUT_DIR}/${outName}`, rw: true },
      ];
      const id = input.id ?? `build-${basename(input.bundlePath).replace(/\.[^.]*$/, '')}-${Date.now().toString(36)}`;
      const memoryMib = input.memoryMib + (options.buildExtraMib ?? 64);
      // The output file must exist for bwrap to bind it: the jail's first process creates it.
      return buildJailed(id, plain, binds, 'none', { memoryMib, vcpus: input.vcpus ?? 1 }, level === 'none' ? [] : [input.outPath], { forceSetpriv: true });
    },
    async sweep() {
      sweepWorkDirs(owner);
      return cgroups?.sweep();
    },
    async close() {
      await cgroups?.close();
      if (workDir) rmSync(workDir, { recursive: true, force: true });
      workDir = undefined;
      skeleton = undefined;
      dropFile = undefined;
    },
    describe() {
      const who = options.uid !== undefined ? `uid ${options.uid}` : `a uid of their own, ${uidBase}–${uidBase + uidCount - 1}`;
      const lines = [`jail: ${level}${dropUid ? ` (guests run as ${who})` : ''}`];
      if (cgroups) lines.push(...cgroups.describe().map((l) => `cgroup ${l}`));
      lines.push(`limits: pids ${pidsMax}, open files ${nofile}, /tmp ${tmpMib} MiB, no core dumps`);
      return [...lines, ...warnings.map((w) => `warning: ${w}`)];
    },
  };
  return jailer;
}

// /dev/tty is left out: a guest has no controlling terminal, and no pty either.
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom'];

/**
 * /etc entries a guest needs, only with network "host": CA certificates (node has its own store;
 * these serve NODE_EXTRA_CA_CERTS and --use-openssl-ca) and name resolution. Without network there
 * is nothing to verify or resolve, and each bind mount costs ~0.2 ms per boot. No /etc/localtime:
 * guests run in UTC, as on Lambda. No /etc/passwd: os.userInfo() fails, as for an unknown uid.
 */
function etcFiles(net: 'none' | 'host'): string[] {
  if (net === 'none') return [];
  return ['/etc/ssl', '/etc/pki', '/etc/ca-certificates', '/etc/resolv.conf', '/etc/hosts', '/etc/nsswitch.conf', '/etc/host.conf', '/etc/gai.conf'].filter((p) => existsSync(p));
}

function bwrapArgs(
  report: IsolationReport,
  o: { net: 'none' | 'host'; hostname: string; binds: Bind[]; paths: Record<string, string>; tmpMib: number; root: boolean; drop: 'none' | 'preload' | 'setpriv'; env: Record<string, string>; thp?: string | undefined },
): string[] {
  const a: string[] = ['--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try'];
  if (o.net === 'none') a.push('--unshare-net');
  // Without root, bubblewrap works through a user namespace (the guest keeps the platform's uid).
  if (!o.root) a.push('--unshare-user');
  a.push('--die-with-parent', '--new-session', '--hostname', o.hostname.slice(0, 63));
  a.push('--ro-bind', '/usr', '/usr');
  for (const [link, how] of Object.entries(report.rootLinks)) {
    if ('symlink' in how) a.push('--symlink', how.symlink, link);
    else a.push('--ro-bind', link, link);
  }
  const etc = etcFiles(o.net);
  // bwrap makes missing parent folders 0700, which the guest's uid could not enter: make them 0755 first.
  const thp = o.thp ? [THP_DIR] : [];
  for (const d of parentsOf([...report.node.extraDirs, ...etc, ...thp])) a.push('--perms', '0755', '--dir', d);
  for (const d of report.node.extraDirs) a.push('--ro-bind', d, d);
  for (const f of etc) a.push('--ro-bind', f, f);
  if (o.thp) a.push('--ro-bind', o.thp, THP_DIR);
  a.push('--proc', '/proc');
  // A /dev of five device nodes bound on the read-only root, not bwrap's --dev (a tmpfs, ptys and
  // /dev/shm, writable until remounted): nothing to write to, and ~0.4 ms less per boot.
  a.push('--perms', '0755', '--dir', '/dev');
  for (const d of DEVICES) if (existsSync(`/dev/${d}`)) a.push('--dev-bind', `/dev/${d}`, `/dev/${d}`);
  a.push('--symlink', '/proc/self/fd', '/dev/fd');
  for (const [i, n] of ['stdin', 'stdout', 'stderr'].entries()) a.push('--symlink', `/proc/self/fd/${i}`, `/dev/${n}`);
  if (report.tools.bwrap.tmpfsSize) a.push('--perms', '1777', '--size', String(o.tmpMib * 1024 * 1024), '--tmpfs', '/tmp');
  else a.push('--perms', '1777', '--tmpfs', '/tmp');
  // bwrap would copy the mode of the host's parent folder (0700 for mkdtemp folders) onto /fn.
  a.push('--perms', '0755', '--dir', FN_DIR);
  if (o.binds.some((b) => b.rw)) a.push('--perms', '0755', '--dir', OUT_DIR);
  for (const b of o.binds) a.push(b.rw ? '--bind' : '--ro-bind', b.host, o.paths[b.host]!);
  // The tmpfs root is writable by default: nothing but /tmp may be.
  a.push('--remount-ro', '/');
  a.push('--chdir', o.binds.some((b) => b.rw) ? OUT_DIR : FN_DIR);
  for (const [k, v] of Object.entries(o.env)) a.push('--setenv', k, v);
  if (o.root) {
    a.push('--cap-drop', 'ALL');
    // What switching to the guest's uid needs; setuid drops them at once (setpriv also drops the
    // bounding set, hence SETPCAP). bwrap sets no_new_privs: nothing can regain them.
    if (o.drop !== 'none') a.push('--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID');
    if (o.drop === 'setpriv') a.push('--cap-add', 'CAP_SETPCAP');
  }
  a.push('--');
  return a;
}

/** Every ancestor folder of `paths` (not /), parents before children. */
function parentsOf(paths: string[]): string[] {
  const out = new Set<string>();
  for (const p of paths) {
    for (let d = dirname(p); d !== '/' && d !== '.'; d = dirname(d)) out.add(d);
  }
  return [...out].sort((x, y) => x.split('/').length - y.split('/').length || x.localeCompare(y));
}

function unshareFstab(report: IsolationReport, s: string, o: { net: 'none' | 'host'; binds: Bind[]; paths: Record<string, string>; tmpMib: number; thp?: string | undefined }): string {
  const esc = (p: string): string => p.replace(/[\s\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  const ro = 'bind,ro,nosuid,nodev';
  const lines = [`${esc(s)} ${esc(s)} none ${ro} 0 0`, `/usr ${esc(join(s, 'usr'))} none ${ro} 0 0`];
  for (const [link, how] of Object.entries(report.rootLinks)) if (!('symlink' in how)) lines.push(`${link} ${esc(join(s, link))} none ${ro} 0 0`);
  for (const d of report.node.extraDirs) lines.push(`${esc(d)} ${esc(join(s, d))} none ${ro} 0 0`);
  for (const f of etcFiles(o.net)) lines.push(`${esc(f)} ${esc(join(s, f))} none ${ro} 0 0`);
  if (o.thp) lines.push(`${esc(o.thp)} ${esc(join(s, THP_DIR))} none ${ro} 0 0`);
  for (const b of o.binds) {
    const target = join(s, o.paths[b.host]!);
    // Mount points for per-guest names (a snapshot blob) are made on demand, in the skeleton.
    if (!existsSync(target)) {
      mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
      closeSync(openSync(target, 'a', 0o644));
    }
    lines.push(`${esc(b.host)} ${esc(target)} none ${b.rw ? 'bind,nosuid,nodev' : ro} 0 0`);
  }
  lines.push(`tmpfs ${esc(join(s, 'tmp'))} tmpfs size=${o.tmpMib}m,mode=1777,nosuid,nodev 0 0`);
  lines.push(`proc ${esc(join(s, 'proc'))} proc nosuid,nodev,noexec 0 0`);
  for (const dev of DEVICES) if (existsSync(`/dev/${dev}`)) lines.push(`/dev/${dev} ${esc(join(s, 'dev', dev))} none bind,nosuid 0 0`);
  return `${lines.join('\n')}\n`;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}

/** pid and its descendants, parents first (for SIGSTOP without a freezer). */
function tree(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number): void => {
    out.push(p);
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const t of tasks) {
      let children = '';
      try {
        children = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const c of children.split(' ').filter(Boolean)) walk(Number(c));
    }
  };
  walk(pid);
  return out;
}

/** Jail folders of platforms that are gone (fstabs, the unshare skeleton). */
function sweepWorkDirs(self: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(tmpdir());
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^fnctl-jail-(\d+)-(\d+)(-.*)?$/.exec(n);
    if (!m || `${m[1]}-${m[2]}` === self || startTimeOf(Number(m[1])) === m[2]) continue;
    const p = join(tmpdir(), n);
    try {
      // Only our own folders: root-owned, not a symlink someone planted.
      const st = lstatSync(p);
      if (st.isDirectory() && st.uid === (process.getuid?.() ?? st.uid)) rmSync(p, { recursive: true, force: true });
    } catch {
      // raced with another sweeper
    }
  }
}
