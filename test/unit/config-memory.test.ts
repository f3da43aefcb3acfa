// The default memory budget: the machine's memory, or this process's memory limit (a container's
// cgroup) when one is set below it; process.constrainedMemory()'s "no limit" answers are ignored.
// And the guests' scheduling policy setting.
import { describe, expect, it } from 'vitest';
import { totalmem } from 'node:os';
import { MiB, machineMemory, memoryBudgetBytes, platformConfig } from '../../core/config.js';

const GiB = 1024 * MiB;

describe('machineMemory', () => {
  it('is the machine memory when there is no limit (0, undefined, or a huge "max")', () => {
    expect(machineMemory(16 * GiB, 0)).toEqual({ bytes: 16 * GiB, source: 'machine' });
    expect(machineMemory(16 * GiB, undefined)).toEqual({ bytes: 16 * GiB, source: 'machine' });
    expect(machineMemory(16 * GiB, 18446744073709552000)).toEqual({ bytes: 16 * GiB, source: 'machine' });
    expect(machineMemory(16 * GiB, 9223372036854771712)).toEqual({ bytes: 16 * GiB, source: 'machine' });
    expect(machineMemory(16 * GiB, NaN)).toEqual({ bytes: 16 * GiB, source: 'machine' });
  });

  it('is the limit when it is below the machine memory', () => {
    expect(machineMemory(16 * GiB, 2 * GiB)).toEqual({ bytes: 2 * GiB, source: 'limit' });
    expect(machineMemory(16 * GiB, 16 * GiB)).toEqual({ bytes: 16 * GiB, source: 'machine' });
  });

  it('defaults to this process: never more than os.totalmem()', () => {
    const m = machineMemory();
    expect(m.bytes).toBeGreaterThan(0);
    expect(m.bytes).toBeLessThanOrEqual(totalmem());
  });
});

describe('memoryBudgetBytes', () => {
  it('is the memory × overcommit, or the set figure', () => {
    expect(memoryBudgetBytes({ overcommit: 1.5 }, machineMemory(16 * GiB, 2 * GiB).bytes)).toBe(3 * GiB);
    expect(memoryBudgetBytes({ overcommit: 1.5, memoryBudgetMiB: 512 }, 2 * GiB)).toBe(512 * MiB);
    expect(memoryBudgetBytes({ overcommit: 1 })).toBe(machineMemory().bytes);
  });
});

describe('guestScheduling', () => {
  it('is batch by default, and anything but batch or normal is refused by name', () => {
    expect(platformConfig().guestScheduling).toBe('batch');
    expect(platformConfig({ guestScheduling: 'normal' }).guestScheduling).toBe('normal');
    expect(() => platformConfig({ guestScheduling: 'fast' as 'batch' })).toThrow('guestScheduling = "fast", must be one of batch, normal');
  });
});
