// Environment variables a function may not set. A guest's env is the environment of the programs
// that start it too (sh, bubblewrap, setpriv; mount and chroot for the unshare jail), and those run
// on the host as the platform's user, before the jail exists. These names change how such programs
// load code or behave: the dynamic loader's (LD_PRELOAD and the rest), glibc's (GLIBC_TUNABLES,
// GCONV_PATH, …: the list glibc itself drops for setuid programs) and the shell's startup ones.
// NODE_OPTIONS is not here: it is dropped, not refused (see MicroVm), as Lambda does with some of
// its reserved names. The platform itself sets one fixed value, GLIBC_TUNABLES=glibc.malloc.hugetlb=1
// (MicroVm), which those programs see too; the guest runtime takes it out of process.env. (A
// setuid bubblewrap may not pass it on, as glibc filters tunables for setuid programs: then only
// the speed-up is lost.)

const UNSAFE_NAMES = new Set([
  'GCONV_PATH',
  'GETCONF_DIR',
  'HOSTALIASES',
  'LOCALDOMAIN',
  'LOCPATH',
  'NIS_PATH',
  'NLSPATH',
  'RESOLV_HOST_CONF',
  'RES_OPTIONS',
  'ENV',
  'BASH_ENV',
  'IFS',
  'PS4',
  'SHELLOPTS',
  'BASHOPTS',
]);
const UNSAFE_PREFIXES = ['LD_', 'GLIBC_', 'MALLOC_'];

/** Why a function may not set env variable `name`, or undefined when it may. */
export function unsafeEnvName(name: string): string | undefined {
  if (UNSAFE_NAMES.has(name) || UNSAFE_PREFIXES.some((p) => name.startsWith(p))) {
    return `${name} is reserved: it changes how the programs that start a microVM load code or behave (reserved: ${UNSAFE_PREFIXES.map((p) => `${p}*`).join(', ')}, ${[...UNSAFE_NAMES].join(', ')})`;
  }
  return undefined;
}

/** `env` without the names a function may not set (for versions deployed before they were refused). */
export function safeEnv(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (unsafeEnvName(k) === undefined) out[k] = v;
  return out;
}
