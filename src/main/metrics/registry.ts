/**
 * The daemon's metrics: a prom-client Registry of its own (never the global
 * one), built from ./definitions.ts, fed by the events the daemon publishes
 * (src/core/events.ts) and, at scrape time, by the queue store and the worker
 * pool. Counts made in worker threads (predeliver and deliver outcomes) come
 * back with the task results and are published on the main thread, so they
 * reach this registry like any other event.
 *
 * Events are process-wide channels: two servers in one process (tests) would
 * count each other's traffic; the daemon runs one.
 */
import { Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import { on } from '../../core/events.ts';
import type { QueueStore } from '../../core/store.ts';
import type { WorkerPool } from '../pool.ts';
import { METRICS, type MetricDef } from './definitions.ts';
import { processMetrics } from './process.ts';
import { QueueGauges } from './queue-gauges.ts';

export interface Metrics {
  readonly registry: Registry;
  /** Unsubscribes from the events (the registry keeps its last values). */
  stop(): void;
}

type Defs = typeof METRICS;
type Key = keyof Defs;

function make(def: MetricDef, registry: Registry, collect?: () => void): Metric {
  const common = { name: def.name, help: def.help, labelNames: [...(def.labels ?? [])], registers: [registry] };
  if (def.type === 'counter') return new Counter({ ...common, ...(collect ? { collect } : {}) });
  if (def.type === 'gauge') return new Gauge({ ...common, ...(collect ? { collect } : {}) });
  return new Histogram({ ...common, buckets: [...(def.buckets ?? [])] });
}

/** Reply class label of an SMTP code: 2xx … 5xx. */
const replyClass = (code: number): string => `${Math.floor(code / 100)}xx`;

export function createMetrics(deps: { store: QueueStore; pool: WorkerPool }): Metrics {
  const registry = new Registry();
  const queue = new QueueGauges(deps.store);
  const m = {} as Record<Key, Metric>;
  const counter = (k: Key): Counter => m[k] as Counter;
  const gauge = (k: Key): Gauge => m[k] as Gauge;
  const histogram = (k: Key): Histogram => m[k] as Histogram;

  const last = new Map<Key, number>();
  // scrape-time values: one read of the queue and of the pool serves every gauge of a scrape
  const collectors: Partial<Record<Key, () => void>> = {
    queueMessages: () => {
      const q = queue.read();
      if (!q) return;
      gauge('queueMessages').set({ state: 'queued' }, q.queued);
      gauge('queueMessages').set({ state: 'hold' }, q.hold);
      gauge('queueOldestAge').set(q.oldestAgeSeconds);
      gauge('queueDue').set(q.due);
      gauge('queueLeases').set(q.leases);
    },
    workerThreads: () => {
      const p = deps.pool.stats();
      gauge('workerThreads').set({ state: 'configured' }, p.size);
      gauge('workerThreads').set({ state: 'ready' }, Math.max(0, p.ready));
      gauge('workerQueue').set(p.queueSize);
      // Piscina keeps totals; a counter moves by the difference (never backwards)
      for (const [k, v] of [['workerBusy', p.busySeconds], ['workerWait', p.waitSeconds], ['workerTasks', p.completed]] as const) {
        const c = counter(k);
        const seen = last.get(k) ?? 0;
        if (v > seen) {
          c.inc(v - seen);
          last.set(k, v);
        }
      }
    },
  };
  for (const k of Object.keys(METRICS) as Key[]) m[k] = make(METRICS[k], registry, collectors[k]);
  for (const metric of processMetrics()) registry.registerMetric(metric);
  // zero samples for the unlabelled series, so rate() has a start
  for (const k of ['connections', 'accepted', 'receivedBytes'] as const) counter(k).inc(0);

  // reply counters by (command, class): children cached, as replies are the most frequent event
  const replyChildren = new Map<string, { inc(): void }>();
  const replies = counter('replies');
  const refused = counter('connectionsRefused');
  const rejected = counter('rejected');
  const tempFailed = counter('tempFailed');
  const deliveries = counter('deliveries');
  const offs = [
    on('connection', () => {
      counter('connections').inc();
      gauge('connectionsActive').inc();
    }),
    on('sessionEnd', () => gauge('connectionsActive').dec()),
    on('connectionRefused', (e) => refused.inc({ reason: e.reason })),
    on('reply', (e) => {
      const key = `${e.command} ${e.code}`;
      let child = replyChildren.get(key);
      if (!child) replyChildren.set(key, (child = replies.labels({ command: e.command, class: replyClass(e.code) })));
      child.inc();
    }),
    on('rejected', (e) => (e.code >= 500 ? rejected : tempFailed).inc({ stage: e.stage, reason: e.reason })),
    on('queued', (e) => {
      counter('accepted').inc();
      counter('receivedBytes').inc(e.size);
      histogram('messageSize').observe(e.size);
      histogram('eodToReply').observe(e.eodMs / 1000);
    }),
    on('predeliver', (e) => histogram('predeliver').observe({ outcome: e.outcome }, e.ms / 1000)),
    on('delivery', (e) => {
      deliveries.inc({ outcome: e.outcome });
      histogram('deliveryDuration').observe({ outcome: e.outcome }, e.ms / 1000);
      if (e.outcome === 'delivered') histogram('deliveredQueueTime').observe(e.queuedMs / 1000);
    }),
    on('commit', (e) => histogram('commit').observe(e.ms / 1000)),
  ];
  return {
    registry,
    stop() {
      for (const off of offs.splice(0)) off();
    },
  };
}
