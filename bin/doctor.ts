// `fnctl doctor`: what isolation a microVM gets on this machine and what is missing, with why and
// how to get it. It probes (microvm/isolation.ts), builds the jail the platform would build, and
// runs one tiny guest through it as a self-test, so "works" means a guest really started jailed.
// Exit code: 0 whenever the platform can run guests, even with weaker isolation (it says so);
// 1 only when the jail it would use is broken (the self-test failed).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectIsolation, NAMESPACES, type IsolationReport, type Missing } from '../microvm/isolation.js';
import { probeBatchScheduling, type BatchProbe } from '../microvm/sched.js';
import { createJailer, type Jailer } from '../microvm/jailer.js';
import type { MicroVmConfig } from '../microvm/types.js';

export interface DoctorOptions {
  json: boolean;
}

interface SelfTest {
  ok: boolean;
  ms: number;
  /** What the guest saw of itself. */
  saw?: { uid: number; root: string[]; pids: number; net: string };
  error?: string;
}

interface DoctorResult {
  ok: boolean;
  level: Jailer['level'];
  /** "full" when nothing is missing, else "weaker". */
  isolation: 'full' | 'weaker';
  jail: string[];
  warnings: string[];
  missing: Missing[];
  selfTest: SelfTest;
  /** Whether guests can run under SCHED_BATCH here (microvm/sched.ts). */
  scheduling: BatchProbe;
  report: IsolationReport;
}

// Runs inside the jail: reports what the guest can see, on one line of JSON.
const PROBE = `const fs = require('fs');
let net = 'none';
for (const l of fs.readFileSync('/proc/net/dev', 'utf8').split('\\n').slice(2)) { const n = l.split(':')[0].trim(); if (n && n !== 'lo') net = 'host'; }
console.log(JSON.stringify({ uid: process.getuid(), root: fs.readdirSync('/').sort(), pids: fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n)).length, net }));
`;

function run(command: string, args: string[], onSpawn: (pid: number) => void): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; error?: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/local/bin:/usr/bin:/bin' }, detached: true });
    if (child.pid !== undefined) onSpawn(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, 15_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr, error: err.message });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function selfTest(jailer: Jailer): Promise<SelfTest> {
  const dir = mkdtempSync(join(tmpdir(), 'fnctl-doctor-'));
  const script = join(dir, 'probe.cjs');
  writeFileSync(script, PROBE, { mode: 0o644 });
  const config: MicroVmConfig = {
    id: `doctor-${process.pid}`,
    functionName: 'doctor',
    version: 1,
    vcpus: 1,
    memoryMib: 128,
    network: 'none',
    rootfs: { bundlePath: script },
    env: {},
    timeoutMs: 10_000,
    initTimeoutMs: 10_000,
    concurrency: 1,
  };
  const jailed = jailer.wrap(config, { command: process.execPath, args: [script] });
  const t0 = performance.now();
  try {
    jailed.prepare();
    // Asynchronous on purpose: the jail moves the guest into its cgroup from this event loop.
    const r = await run(jailed.command, jailed.args, (pid) => jailed.attach(pid));
    const ms = performance.now() - t0;
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.code !== 0 || !line.startsWith('{')) {
      const why = r.stderr.trim().split('\n').slice(-3).join(' | ') || r.error || `exit ${r.code ?? r.signal}`;
      return { ok: false, ms, error: why };
    }
    return { ok: true, ms, saw: JSON.parse(line) as SelfTest['saw'] };
  } catch (err) {
    return { ok: false, ms: performance.now() - t0, error: (err as Error).message };
  } finally {
    await jailed.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

function mark(ok: boolean): string {
  return ok ? 'yes' : 'NO';
}

/** Transparent huge pages, which guests' malloc asks for (microvm.ts GUEST_MALLOC): what the mode means for them. */
function hugePages(): string {
  let mode: string | undefined;
  try {
    mode = /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1];
  } catch {
    // no THP
  }
  if (mode === 'always' || mode === 'madvise') return `${mode}: guests' malloc uses them (a 23 MB snapshot restored ~20 ms faster here)`;
  return `${mode ?? 'not available'}: guests' malloc cannot use them; large snapshots restore slower (echo madvise > /sys/kernel/mm/transparent_hugepage/enabled)`;
}

function print(r: DoctorResult): void {
  const rep = r.report;
  const out: string[] = [];
  out.push(`fnctl doctor: isolation of microVMs on this machine (Linux ${rep.kernel}, ${rep.root ? 'root' : `uid ${rep.uid}`}, node ${rep.node.version})`);
  out.push('');
  const { bwrap, unshare, setpriv } = rep.tools;
  out.push(`jail level     ${(r.jail[0] ?? r.level).replace(/^jail: /, '')}`);
  out.push(`bubblewrap     ${bwrap.works ? `works (${bwrap.path}, ${bwrap.version})` : bwrap.path ? `installed but fails: ${bwrap.error}` : 'not installed'}`);
  out.push(`unshare        ${unshare.ok ? `works (${unshare.path})` : unshare.path ? `unusable: ${unshare.error}` : 'not installed'}`);
  out.push(`setpriv        ${setpriv.path ?? 'not installed'}`);
  out.push(`namespaces     ${NAMESPACES.map((n) => `${n} ${mark(rep.namespaces[n].ok)}`).join(', ')}`);
  const cg = rep.cgroup;
  const where = (v: 1 | 2 | undefined): string => (v === 2 ? 'v2' : v === 1 ? 'v1' : 'NONE');
  out.push(`cgroups        ${cg.version}${cg.v2 ? ` (v2 at ${cg.v2.mount}, offers: ${cg.v2.available.join(' ') || 'no controllers'})` : ''}`);
  out.push(`  memory       ${where(cg.plan.memory)}    cpu ${where(cg.plan.cpu)}    pids ${where(cg.plan.pids)}    pause ${cg.plan.freeze === 'signal' ? 'SIGSTOP/SIGCONT' : `${cg.plan.freeze} freezer`}    kill ${cg.plan.kill}`);
  for (const line of r.jail.slice(1)) out.push(`  ${line}`);
  out.push(`huge pages     ${hugePages()}`);
  const sched = r.scheduling;
  out.push(`scheduling     ${sched.chrt ? `SCHED_BATCH for guests (${sched.chrt}): a guest that wakes does not preempt the gateway` : `normal policy for guests: ${sched.error}; warm throughput is lower`}`);
  const st = r.selfTest;
  if (st.ok && st.saw) {
    const visible = st.saw.root.filter((x) => !x.startsWith('.')).join(' ');
    out.push(`self-test      a jailed node started in ${st.ms.toFixed(0)} ms: uid ${st.saw.uid}, ${st.saw.pids} pid(s) visible, network ${st.saw.net}, root: ${visible}`);
  } else {
    out.push(`self-test      FAILED after ${st.ms.toFixed(0)} ms: ${st.error}`);
  }
  out.push('');
  if (!r.missing.length && r.level === 'bubblewrap') {
    out.push('Full isolation: namespaces, a read-only root with only the function, cgroup limits for memory, CPU and pids, a freezer.');
  } else {
    out.push(`Weaker isolation: the platform runs, but${r.level === 'none' ? ' guests are NOT jailed and' : ''} these are missing:`);
    for (const m of r.missing) {
      out.push(`  - ${m.what}: ${m.why}`);
      out.push(`      without it: ${m.impact}`);
      out.push(`      to get it:  ${m.fix}`);
    }
    for (const w of r.warnings) if (!r.missing.some((m) => w.includes(m.what))) out.push(`  - ${w}`);
  }
  if (!r.ok) out.push('', 'The jail this machine would use is broken: guests would fail to start (see the self-test above).');
  console.log(out.join('\n'));
}

/** Print what isolation is active and what is missing; resolves with the exit code. */
export async function doctor(options: DoctorOptions): Promise<number> {
  const report = detectIsolation();
  const jailer = createJailer(report);
  try {
    const st = await selfTest(jailer);
    const result: DoctorResult = {
      ok: st.ok,
      level: jailer.level,
      isolation: report.missing.length === 0 && jailer.level === 'bubblewrap' ? 'full' : 'weaker',
      jail: jailer.describe().filter((l) => !l.startsWith('warning: ')),
      warnings: jailer.warnings,
      missing: report.missing,
      selfTest: st,
      scheduling: probeBatchScheduling(),
      report,
    };
    if (options.json) console.log(JSON.stringify(result, null, 2));
    else print(result);
    return st.ok ? 0 : 1;
  } finally {
    await jailer.close();
  }
}
