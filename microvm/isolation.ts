// What isolation this machine can give a microVM, found by looking and by trying, never assumed:
// am I root, is bubblewrap there and does it really run a sandbox, which namespaces can be made,
// which cgroup version is mounted and which of its controllers fnctl may use, is there a freezer.
// Every gap comes with why it is missing and how to get it. The jailer builds its plan from this
// report and `fnctl doctor` prints it. Probes run once per process (a few real spawns, ~50 ms)
// and are cached.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, rmdirSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { dirname, join } from 'node:path';

export type NamespaceName = 'pid' | 'mount' | 'ipc' | 'uts' | 'net' | 'user' | 'cgroup';
export const NAMESPACES: readonly NamespaceName[] = ['pid', 'mount', 'ipc', 'uts', 'net', 'user', 'cgroup'];

/** The controllers fnctl limits a microVM with (plus freezer for pause). */
export type LimitController = 'memory' | 'cpu' | 'pids';

export interface Probe {
  ok: boolean;
  /** Why not, in a line (the tool's own message when there was one). */
  error?: string;
}

export interface ToolInfo {
  /** Absolute path, when found on PATH. */
  path?: string;
  version?: string;
}

export interface BwrapInfo extends ToolInfo {
  /** A real sandbox ran (`bwrap … --unshare-pid … true`), with the options the jailer uses. */
  works: boolean;
  /** bwrap accepts `--size` for a tmpfs (0.7+). */
  tmpfsSize: boolean;
  error?: string;
}

export interface CgroupV1Hierarchy {
  /** Controllers mounted together on this hierarchy, e.g. ['cpu', 'cpuacct']. */
  controllers: string[];
  mount: string;
  /** This process's own cgroup directory in this hierarchy: fnctl nests its groups below it. */
  own: string;
  /** A child group could be created here (tried: mkdir + rmdir). */
  writable: boolean;
  error?: string;
}

export interface CgroupV2Info {
  mount: string;
  own: string;
  /** Controllers this process's cgroup may hand to children (its cgroup.controllers). */
  available: string[];
  /**
   * How fnctl gets controllers for its children: 'root' (own cgroup is the hierarchy root: always
   * possible), 'enabled' (already in own cgroup.subtree_control), 'alone' (own cgroup holds only this
   * process: fnctl moves itself into a leaf `fnctl-host` first), 'blocked' (other processes live in
   * own cgroup; v2 forbids controllers in a cgroup that has processes and children).
   */
  delegation: 'root' | 'enabled' | 'alone' | 'blocked';
  writable: boolean;
  /** cgroup.kill (Linux 5.14+) and cgroup.freeze (5.2+): core v2 files, no controller needed. */
  kill: boolean;
  freeze: boolean;
  error?: string;
}

/** Where each limit lives, as the jailer will apply it; undefined: not applied on this machine. */
export interface CgroupPlan {
  memory?: 1 | 2;
  cpu?: 1 | 2;
  pids?: 1 | 2;
  /** Pause: v2 cgroup.freeze, v1 freezer.state, else SIGSTOP/SIGCONT of every process of the guest. */
  freeze: 'v2' | 'v1' | 'signal';
  /** Kill everything of a guest: v2 cgroup.kill, else SIGKILL each pid the cgroup lists. */
  kill: 'cgroup.kill' | 'signal';
  /** A v2 group is made per microVM (for limits, or only for freeze/kill/accounting). */
  v2Group: boolean;
}

export interface Missing {
  /** What is missing, e.g. "bubblewrap". */
  what: string;
  /** What it costs: which protection is weaker without it. */
  impact: string;
  why: string;
  fix: string;
}

export type JailLevel = 'bubblewrap' | 'unshare' | 'none';

export interface IsolationReport {
  checkedAt: string;
  kernel: string;
  root: boolean;
  uid: number;
  node: {
    execPath: string;
    version: string;
    /** Folders outside /usr that the node binary and its shared libraries need (bound read-only). */
    extraDirs: string[];
  };
  /** /lib, /lib64, /bin, /sbin on the host: symlinks into /usr (merged /usr) or real folders. */
  rootLinks: Record<string, { symlink: string } | { dir: true }>;
  tools: { bwrap: BwrapInfo; unshare: ToolInfo & Probe; setpriv: ToolInfo; chroot: ToolInfo; mount: ToolInfo; sh: ToolInfo };
  namespaces: Record<NamespaceName, Probe>;
  cgroup: {
    version: 'v2' | 'v1' | 'hybrid' | 'none';
    v1: CgroupV1Hierarchy[];
    v2?: CgroupV2Info;
    plan: CgroupPlan;
  };
  /** The strongest jail this machine can run. */
  level: JailLevel;
  missing: Missing[];
}

const V1_CONTROLLERS = new Set([
  'cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'blkio', 'perf_event', 'net_prio', 'hugetlb', 'pids', 'rdma', 'misc',
]);

let cached: IsolationReport | undefined;

/** The isolation report of this machine, probed once per process. `fresh` probes again. */
export function detectIsolation(options: { fresh?: boolean } = {}): IsolationReport {
  if (cached && !options.fresh) return cached;
  cached = probe();
  return cached;
}

/** Look a command up on PATH (plus the sbin folders, which a non-login root shell may lack). */
export function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function run(command: string, args: string[], timeoutMs = 5000): { ok: boolean; out: string; err: string } {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' } });
  const err = (r.error?.message ?? r.stderr ?? '').trim();
  return { ok: r.status === 0 && !r.error, out: (r.stdout ?? '').trim(), err: err.split('\n').filter(Boolean).slice(-1)[0] ?? (r.signal ? `killed by ${r.signal}` : `exit code ${r.status}`) };
}

function probe(): IsolationReport {
  const uid = process.getuid?.() ?? -1;
  const root = uid === 0;
  const rootLinks: IsolationReport['rootLinks'] = {};
  for (const d of ['/lib', '/lib64', '/lib32', '/libx32', '/bin', '/sbin']) {
    try {
      const st = lstatSync(d);
      if (st.isSymbolicLink()) rootLinks[d] = { symlink: readlinkRel(d) };
      else if (st.isDirectory()) rootLinks[d] = { dir: true };
    } catch {
      // absent
    }
  }
  const tools = {
    bwrap: probeBwrap(root, rootLinks),
    unshare: { ...toolInfo('unshare', ['--version']), ok: false } as ToolInfo & Probe,
    setpriv: toolInfo('setpriv', ['--version']),
    chroot: toolInfo('chroot', ['--version']),
    mount: toolInfo('mount', ['--version']),
    sh: toolInfo('sh'),
  };
  const namespaces = probeNamespaces(tools.unshare.path, root, tools.bwrap);
  if (tools.unshare.path) {
    const needed: NamespaceName[] = ['pid', 'mount', 'ipc', 'uts'];
    const bad = needed.filter((n) => !namespaces[n].ok);
    tools.unshare.ok = root && bad.length === 0;
    if (!root) tools.unshare.error = 'the unshare jail needs root (it mounts the guest root and drops to an unprivileged uid)';
    else if (bad.length) tools.unshare.error = `cannot create ${bad.join(', ')} namespaces`;
  } else {
    tools.unshare.error = 'not installed';
  }
  const cgroup = probeCgroups();
  const node = probeNode();
  const unshareJail = tools.unshare.ok && !!tools.mount.path && !!tools.chroot.path && !!tools.sh.path;
  const level: JailLevel = tools.bwrap.works ? 'bubblewrap' : unshareJail ? 'unshare' : 'none';
  const report: IsolationReport = {
    checkedAt: new Date().toISOString(),
    kernel: release(),
    root,
    uid,
    node,
    rootLinks,
    tools,
    namespaces,
    cgroup,
    level,
    missing: [],
  };
  report.missing = explainMissing(report);
  return report;
}

function readlinkRel(path: string): string {
  // realpath gives the absolute target; bwrap --symlink takes the link text as is.
  const target = realpathSync(path);
  return target.startsWith('/') ? target.slice(1) : target;
}

function toolInfo(name: string, versionArgs?: string[]): ToolInfo {
  const path = which(name);
  if (!path) return {};
  if (!versionArgs) return { path };
  const r = run(path, versionArgs);
  const line = (r.out || r.err).split('\n')[0] ?? '';
  const version = /(\d+\.\d+(\.\d+)?)/.exec(line)?.[1];
  return version ? { path, version } : { path };
}

function probeBwrap(root: boolean, links: IsolationReport['rootLinks']): BwrapInfo {
  const path = which('bwrap');
  if (!path) return { works: false, tmpfsSize: false, error: 'not installed' };
  const r = run(path, ['--version']);
  const version = /(\d+\.\d+(\.\d+)?)/.exec(r.out)?.[1];
  const info: BwrapInfo = { path, works: false, tmpfsSize: false };
  if (version) info.version = version;
  const [maj = 0, min = 0] = (version ?? '0.0').split('.').map(Number);
  info.tmpfsSize = maj > 0 || min >= 7;
  // The shape of a real jail, so "works" means what the jailer will ask of it.
  const args = ['--ro-bind', '/usr', '/usr', '--proc', '/proc', '--dev', '/dev'];
  for (const [link, how] of Object.entries(links)) args.push(...('symlink' in how ? ['--symlink', how.symlink, link] : ['--ro-bind', link, link]));
  args.push(...(info.tmpfsSize ? ['--size', '1048576'] : []), '--tmpfs', '/tmp');
  args.push('--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-net', '--unshare-cgroup-try', '--die-with-parent', '--new-session');
  if (!root) args.push('--unshare-user');
  else args.push('--cap-drop', 'ALL');
  args.push('--', '/usr/bin/true');
  const t = run(path, args);
  info.works = t.ok;
  if (!t.ok) info.error = t.err;
  return info;
}

function probeNamespaces(unshare: string | undefined, root: boolean, bwrap: BwrapInfo): Record<NamespaceName, Probe> {
  const out = {} as Record<NamespaceName, Probe>;
  if (!unshare) {
    // Without unshare, bubblewrap's probe speaks for the namespaces it made.
    for (const n of NAMESPACES) out[n] = bwrap.works && n !== 'user' && n !== 'cgroup' ? { ok: true } : { ok: false, error: 'unshare (util-linux) is not installed, cannot probe' };
    return out;
  }
  const flag: Record<NamespaceName, string[]> = {
    pid: ['--pid', '--fork'],
    mount: ['--mount'],
    ipc: ['--ipc'],
    uts: ['--uts'],
    net: ['--net'],
    user: ['--user'],
    cgroup: ['--cgroup'],
  };
  // Without root, the others need a user namespace to be created in.
  const base = root ? [] : ['--user', '--map-root-user'];
  const all = run(unshare, [...base, ...NAMESPACES.flatMap((n) => flag[n]), '/usr/bin/true']);
  for (const n of NAMESPACES) {
    if (all.ok) {
      out[n] = { ok: true };
      continue;
    }
    const r = run(unshare, [...(n === 'user' ? [] : base), ...flag[n], '/usr/bin/true']);
    out[n] = r.ok ? { ok: true } : { ok: false, error: r.err };
  }
  return out;
}

function probeNode(): IsolationReport['node'] {
  const execPath = realpathSync(process.execPath);
  const dirs = new Set<string>();
  const covered = (p: string): boolean => p.startsWith('/usr/') || /^\/(lib|lib64|lib32|libx32)\//.test(p);
  if (!covered(execPath)) {
    // e.g. /opt/node-v20/bin/node: its whole install prefix (lib/node_modules holds npm, harmless).
    dirs.add(dirname(dirname(execPath)));
  }
  const ldd = which('ldd');
  if (ldd) {
    const r = run(ldd, [execPath]);
    for (const m of r.out.matchAll(/=>\s+(\/\S+)/g)) {
      try {
        const lib = realpathSync(m[1]!);
        if (!covered(lib)) dirs.add(dirname(lib));
      } catch {
        // not found: node would not start either
      }
    }
  }
  return { execPath, version: process.version, extraDirs: [...dirs].filter((d) => ![...dirs].some((o) => o !== d && d.startsWith(`${o}/`))) };
}

interface MountEntry {
  root: string;
  point: string;
  fstype: string;
  superOptions: string[];
}

function mounts(): MountEntry[] {
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const l = left.split(' ');
    const r = right.split(' ');
    const unescape = (s: string): string => s.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.push({ root: unescape(l[3] ?? '/'), point: unescape(l[4] ?? ''), fstype: r[0] ?? '', superOptions: (r[2] ?? '').split(',') });
  }
  return out;
}

/** This process's cgroup paths: v1 by controller list, v2 under key ''. */
function ownCgroups(): Map<string, string> {
  const map = new Map<string, string>();
  try {
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const m = /^\d+:([^:]*):(.*)$/.exec(line);
      if (m) map.set(m[1]!, m[2]!);
    }
  } catch {
    // no cgroups at all
  }
  return map;
}

function ownDir(mount: MountEntry, path: string): string {
  // In a container without a cgroup namespace the mount's root is the container's group: strip it.
  const rel = mount.root !== '/' && path.startsWith(mount.root) ? path.slice(mount.root.length) : path;
  const dir = join(mount.point, rel);
  return dir.length > 1 && dir.endsWith('/') ? dir.slice(0, -1) : dir;
}

/** Can a child group be made here? Tried for real: cgroupfs may be read-only or not ours. */
function tryMkdir(dir: string): Probe {
  const probeDir = join(dir, `fnctl-probe-${process.pid}`);
  try {
    mkdirSync(probeDir);
    rmdirSync(probeDir);
    return { ok: true };
  } catch (err) {
    return { ok: false, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
}

function readWords(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

function probeCgroups(): IsolationReport['cgroup'] {
  const own = ownCgroups();
  const all = mounts();
  const v1: CgroupV1Hierarchy[] = [];
  const seen = new Set<string>();
  for (const m of all.filter((e) => e.fstype === 'cgroup')) {
    const controllers = m.superOptions.filter((o) => V1_CONTROLLERS.has(o));
    if (!controllers.length) continue; // name=systemd and friends: no controller
    const key = [...controllers].sort().join(',');
    if (seen.has(key)) continue; // the same hierarchy mounted twice
    seen.add(key);
    const path = [...own.entries()].find(([k]) => k.split(',').sort().join(',') === key)?.[1] ?? '/';
    const dir = ownDir(m, path);
    const w = tryMkdir(dir);
    const h: CgroupV1Hierarchy = { controllers, mount: m.point, own: dir, writable: w.ok };
    if (w.error) h.error = w.error;
    v1.push(h);
  }
  let v2: CgroupV2Info | undefined;
  const m2 = all.find((e) => e.fstype === 'cgroup2');
  if (m2) {
    const path = own.get('') ?? '/';
    const dir = ownDir(m2, path);
    const available = readWords(join(dir, 'cgroup.controllers'));
    const enabled = readWords(join(dir, 'cgroup.subtree_control'));
    const isRoot = dir === m2.point;
    const procs = readWords(join(dir, 'cgroup.procs'));
    const wanted = ['memory', 'cpu', 'pids'].filter((c) => available.includes(c));
    const delegation: CgroupV2Info['delegation'] = isRoot
      ? 'root'
      : wanted.every((c) => enabled.includes(c))
        ? 'enabled'
        : procs.every((p) => p === String(process.pid))
          ? 'alone'
          : 'blocked';
    const w = tryMkdir(dir);
    // Core files exist in every non-root group; look at one we could make, else at our own.
    const probeAt = isRoot ? undefined : dir;
    v2 = {
      mount: m2.point,
      own: dir,
      available,
      delegation,
      writable: w.ok,
      kill: probeAt ? existsSync(join(probeAt, 'cgroup.kill')) : kernelAtLeast(5, 14),
      freeze: probeAt ? existsSync(join(probeAt, 'cgroup.freeze')) : kernelAtLeast(5, 2),
    };
    if (w.error) v2.error = w.error;
  }
  const version = v2 && v1.length ? 'hybrid' : v2 ? 'v2' : v1.length ? 'v1' : 'none';
  return { version, v1, ...(v2 ? { v2 } : {}), plan: planCgroups(v1, v2) };
}

function kernelAtLeast(major: number, minor: number): boolean {
  const [a = 0, b = 0] = release().split('.').map((x) => parseInt(x, 10));
  return a > major || (a === major && b >= minor);
}

/** Decide where each limit goes: v2 when it has the controller for us, else v1, else nowhere. */
export function planCgroups(v1: CgroupV1Hierarchy[], v2: CgroupV2Info | undefined, options: { v2Core?: boolean } = {}): CgroupPlan {
  const v2Usable = !!v2 && v2.writable && v2.delegation !== 'blocked';
  const plan: CgroupPlan = { freeze: 'signal', kill: 'signal', v2Group: false };
  const v1Has = (c: string): boolean => v1.some((h) => h.writable && h.controllers.includes(c));
  for (const c of ['memory', 'cpu', 'pids'] as const) {
    if (v2Usable && v2!.available.includes(c)) plan[c] = 2;
    else if (v1Has(c)) plan[c] = 1;
  }
  // A v2 group costs one mkdir and gives freeze, kill and CPU accounting without any controller.
  plan.v2Group = v2Usable && (plan.memory === 2 || plan.cpu === 2 || plan.pids === 2 || options.v2Core !== false);
  if (plan.v2Group && v2!.freeze) plan.freeze = 'v2';
  else if (v1Has('freezer')) plan.freeze = 'v1';
  if (plan.v2Group && v2!.kill) plan.kill = 'cgroup.kill';
  return plan;
}

function explainMissing(r: IsolationReport): Missing[] {
  const out: Missing[] = [];
  const { bwrap, unshare } = r.tools;
  if (!bwrap.works) {
    const installed = !!bwrap.path;
    out.push({
      what: 'bubblewrap',
      impact:
        r.level === 'unshare'
          ? 'guests run in the unshare jail: the same namespaces, read-only root and own uid, but no cgroup namespace, the host\'s hostname, and slower starts (mount(8) and chroot, a cgroup join in the critical path)'
          : 'guests run without namespaces or a private root: they can see the host filesystem (the data folder, the token, other functions)',
      why: installed ? `bwrap is installed but a sandbox failed: ${bwrap.error}` : 'not installed',
      fix: installed
        ? r.root
          ? 'check that namespaces are allowed (containers: run with --privileged or a seccomp/AppArmor profile that allows unshare and mount)'
          : 'allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or user.max_user_namespaces > 0; Ubuntu 24.04: an AppArmor profile for bwrap), or run fnctl as root'
        : 'apt-get install bubblewrap (Debian/Ubuntu), dnf install bubblewrap (Fedora), apk add bubblewrap (Alpine)',
    });
  }
  if (!bwrap.works && !unshare.ok && r.level === 'none') {
    out.push({
      what: 'unshare jail',
      impact: 'no fallback jail either',
      why: unshare.error ?? 'unavailable',
      fix: unshare.path ? 'run fnctl as root' : 'apt-get install util-linux mount',
    });
  }
  for (const n of NAMESPACES) {
    const p = r.namespaces[n];
    if (p.ok) continue;
    const impact: Record<NamespaceName, string> = {
      pid: 'guests could see and signal host processes',
      mount: 'guests could not get a private read-only root',
      ipc: 'guests share System V IPC with the host',
      uts: 'guests share the hostname',
      net: 'network "none" cannot be enforced',
      user: 'without root, bubblewrap needs user namespaces',
      cgroup: 'guests see host cgroup paths in /proc/self/cgroup',
    };
    out.push({
      what: `${n} namespace`,
      impact: impact[n],
      why: p.error ?? 'cannot be created',
      fix: r.root ? 'the kernel or the container forbids it: run on a kernel with CONFIG_NAMESPACES, outside a restrictive container (docker: --privileged, or --security-opt seccomp=unconfined --cap-add SYS_ADMIN)' : 'run fnctl as root, or allow unprivileged user namespaces',
    });
  }
  const { plan, v1, v2, version } = r.cgroup;
  const cgFix = (c: string): string => {
    if (version === 'none') return 'mount cgroup2 on /sys/fs/cgroup (systemd does it at boot), or run fnctl where cgroups exist';
    if (!r.root && !(v2 && v2.writable)) return 'run fnctl as root, or in a delegated cgroup: systemd-run --user --scope -p Delegate=yes fnctl up';
    if (v2 && v2.delegation === 'blocked') return `fnctl's cgroup ${v2.own} holds other processes, so v2 cannot give its children controllers: start fnctl in a cgroup of its own (systemd-run --scope -p Delegate=yes fnctl up)`;
    if (v2 && !v2.available.includes(c) && !v1.some((h) => h.controllers.includes(c))) return `enable the ${c} controller for ${v2.own} (echo +${c} > its parent's cgroup.subtree_control), or boot with it (cgroup_enable=${c})`;
    return `make ${c} cgroups writable for fnctl (it tried mkdir under its own cgroup)`;
  };
  const limits: [LimitController, string][] = [
    ['memory', 'memory is bounded only by V8 heap flags: Buffers and native memory can grow past the limit'],
    ['cpu', 'vcpus is not enforced: a spinning guest takes whole cores'],
    ['pids', 'a fork bomb is not bounded'],
  ];
  for (const [c, impact] of limits) {
    if (plan[c]) continue;
    out.push({ what: `cgroup ${c} controller`, impact, why: cgroupWhy(r, c), fix: cgFix(c) });
  }
  if (plan.freeze === 'signal') {
    out.push({
      what: 'cgroup freezer',
      impact: 'pause uses SIGSTOP/SIGCONT of each guest process (a guest could race it by forking, and sees the stop)',
      why: cgroupWhy(r, 'freezer'),
      fix: cgFix('freezer'),
    });
  }
  if (!r.tools.setpriv.path && r.root) {
    out.push({ what: 'setpriv', impact: 'guests run as root without capabilities instead of an unprivileged uid of their own', why: 'not installed', fix: 'apt-get install util-linux' });
  }
  return out;
}

function cgroupWhy(r: IsolationReport, c: string): string {
  const { v1, v2, version } = r.cgroup;
  if (version === 'none') return 'no cgroup filesystem is mounted';
  const h = v1.find((x) => x.controllers.includes(c));
  if (h && !h.writable) return `v1 ${c} at ${h.own} is not writable (${h.error ?? 'denied'})`;
  if (v2) {
    if (!v2.writable) return `v2 at ${v2.own} is not writable (${v2.error ?? 'denied'})`;
    if (c === 'freezer' && !v2.freeze) return 'the kernel has no cgroup.freeze (needs Linux 5.2+) and no v1 freezer is mounted';
    if (v2.delegation === 'blocked') return `v2: ${v2.own} holds other processes`;
    if (!v2.available.includes(c)) return `v2 at ${v2.own} does not offer ${c} (cgroup.controllers: ${v2.available.join(' ') || 'none'})${h ? '' : ' and no v1 hierarchy mounts it'}`;
  }
  return `no writable hierarchy offers ${c}`;
}

