// Platform metrics in Prometheus text format (GET /metrics). Label children are created once per
// function version, so the invoke hot path only increments numbers.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();

  readonly invocations = new Counter({
    name: 'fnctl_invocations_total',
    help: 'Invocations by function, start kind and outcome code (ok or an error code)',
    labelNames: ['function', 'start', 'code'] as const,
    registers: [this.registry],
  });

  readonly duration = new Histogram({
    name: 'fnctl_invocation_duration_seconds',
    help: 'Gateway-side invocation latency by function and start kind',
    labelNames: ['function', 'start'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly starts = new Counter({
    name: 'fnctl_microvm_starts_total',
    help: 'microVMs started, by function and how (cold, restore)',
    labelNames: ['function', 'start'] as const,
    registers: [this.registry],
  });

  readonly microvms = new Gauge({
    name: 'fnctl_microvms',
    help: 'microVMs by function and state',
    labelNames: ['function', 'state'] as const,
    registers: [this.registry],
  });

  readonly throttled = new Counter({
    name: 'fnctl_throttled_total',
    help: 'Requests answered 429 THROTTLED, by function',
    labelNames: ['function'] as const,
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'fnctl_' });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
