// Small facts about processes that several tests check.

/** Whether a process with this pid exists (a zombie counts until it is reaped). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
