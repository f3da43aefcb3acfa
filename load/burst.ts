// The burst benchmark: from zero microVMs, N connections at once on hello with concurrency 1.
// Reports every response by status (the only error allowed is 429 THROTTLED), how many
// microVMs ran over time, and how long until the platform had started them.
import autocannon from 'autocannon';
import { request } from 'undici';
import { startPlatform } from './processes.js';
import { deployExample, type PlatformTarget } from './platform-api.js';

export interface BurstResult {
  connections: number;
  durationS: number;
  requests: number;
  rps: number;
  statuses: Record<string, number>;
  errors: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** [ms since start, microVMs running] every 250 ms. */
  microvms: [number, number][];
  maxMicrovms: number;
}

async function countInstances(target: PlatformTarget, name: string): Promise<number> {
  const res = await request(`${target.url}/api/functions/${name}/instances`, { headers: { authorization: `Bearer ${target.token}` } });
  const body = (await res.body.json()) as { instances: unknown[] };
  return body.instances.length;
}

export async function burst(opts: { connections: number; duration: number; max: number }): Promise<BurstResult> {
  const platform = await startPlatform();
  try {
    await deployExample(platform, 'hello', 'functions/examples/hello.js', { concurrency: 1, max: opts.max });
    await request(`${platform.url}/api/functions/hello/instances`, { method: 'DELETE', headers: { authorization: `Bearer ${platform.token}` } }).then((r) => r.body.dump());
    const statuses: Record<string, number> = {};
    const microvms: [number, number][] = [];
    const started = performance.now();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        microvms.push([Math.round(performance.now() - started), await countInstances(platform, 'hello')]);
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    const result = await autocannon({
      url: `${platform.url}/fn/hello`,
      connections: opts.connections,
      duration: opts.duration,
      setupClient: (client) => {
        client.on('response', (statusCode: number) => {
          statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
        });
      },
    });
    sampling = false;
    await sampler;
    const l = result.latency as unknown as Record<string, number>;
    return {
      connections: opts.connections,
      durationS: opts.duration,
      requests: result.requests.total,
      rps: result.requests.average,
      statuses,
      errors: result.errors + result.timeouts,
      latencyMs: { p50: l.p50!, p99: l.p99!, max: l.max! },
      microvms,
      maxMicrovms: Math.max(0, ...microvms.map(([, n]) => n)),
    };
  } finally {
    await platform.stop();
  }
}
