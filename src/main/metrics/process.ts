/**
 * prom-client's default process metrics (CPU, memory, heap, GC, event-loop
 * delay through perf_hooks.monitorEventLoopDelay, file descriptors), created
 * once per process in a registry of their own — never the global one — and
 * shared by every metrics registry of the process (a test may start many
 * servers; the event-loop monitor and GC observer are not made again each time).
 * The `nodejs_active_*_total` gauges are left out: promtool rejects a gauge
 * whose name ends in `_total` (the per-type `nodejs_active_*` gauges stay).
 */
import { Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { EXCLUDED_DEFAULT_METRICS } from './definitions.ts';

let shared: Metric[] | undefined;

export function processMetrics(): Metric[] {
  if (!shared) {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 });
    for (const name of EXCLUDED_DEFAULT_METRICS) registry.removeSingleMetric(name);
    shared = registry.getMetricsAsArray() as unknown as Metric[];
  }
  return shared;
}
