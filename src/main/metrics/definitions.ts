/**
 * Every metric smtp-receive exposes on `/metrics`: name, type, help, labels
 * and buckets, in one table. The registry (./registry.ts) is built from it,
 * and the Grafana dashboard (grafana/generate.ts) takes its metric names from
 * it, so the dashboard cannot name a metric that does not exist.
 *
 * Conventions: prefix `smtp_receive_`, base units (seconds, bytes), counters
 * end in `_total`, labels drawn from small fixed sets (never an address or an id).
 */

export interface MetricDef {
  readonly name: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly help: string;
  readonly labels?: readonly string[];
  readonly buckets?: readonly number[];
}

const KIB = 1024;

export const METRICS = {
  connections: {
    name: 'smtp_receive_connections_total', type: 'counter',
    help: 'SMTP sessions started (including those then refused by checkAccess).',
  },
  connectionsActive: {
    name: 'smtp_receive_connections_active', type: 'gauge',
    help: 'SMTP sessions open now.',
  },
  connectionsRefused: {
    name: 'smtp_receive_connections_refused_total', type: 'counter', labels: ['reason'],
    help: 'Connections refused, by reason (max-clients, access, ...).',
  },
  replies: {
    name: 'smtp_receive_smtp_replies_total', type: 'counter', labels: ['command', 'class'],
    help: 'SMTP replies sent, by the command answered (CONNECT: the greeting) and reply class (2xx, 3xx, 4xx, 5xx).',
  },
  accepted: {
    name: 'smtp_receive_messages_accepted_total', type: 'counter',
    help: 'Messages queued: 250 after DATA.',
  },
  rejected: {
    name: 'smtp_receive_messages_rejected_total', type: 'counter', labels: ['stage', 'reason'],
    help: 'Refusals with a 5xx reply, by stage (connect, mail, rcpt, data, predeliver) and reason; a refused recipient counts at stage rcpt.',
  },
  tempFailed: {
    name: 'smtp_receive_messages_tempfailed_total', type: 'counter', labels: ['stage', 'reason'],
    help: 'Refusals with a 4xx reply (try again later), by stage and reason.',
  },
  messageSize: {
    name: 'smtp_receive_message_size_bytes', type: 'histogram',
    help: 'Size of queued messages as stored (trace headers included).',
    buckets: [KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, 1024 * KIB, 4096 * KIB, 16384 * KIB, 65536 * KIB],
  },
  receivedBytes: {
    name: 'smtp_receive_received_bytes_total', type: 'counter',
    help: 'Bytes of queued messages as stored (trace headers included).',
  },
  eodToReply: {
    name: 'smtp_receive_end_of_data_to_reply_seconds', type: 'histogram',
    help: 'Time from the end of DATA (the client\'s final dot) to the 250 reply: predeliver, fsync and the LMDB commit.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  },
  predeliver: {
    name: 'smtp_receive_predeliver_duration_seconds', type: 'histogram', labels: ['outcome'],
    help: 'predeliver run time (worker queue wait included), by outcome (accept, reject, error, timeout, busy).',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  },
  deliveries: {
    name: 'smtp_receive_deliveries_total', type: 'counter', labels: ['outcome'],
    help: 'Delivery attempts, by outcome (delivered, deferred, expired, error).',
  },
  deliveryDuration: {
    name: 'smtp_receive_delivery_duration_seconds', type: 'histogram', labels: ['outcome'],
    help: 'Delivery attempt time (worker queue wait included), by outcome.',
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
  },
  deliveredQueueTime: {
    name: 'smtp_receive_delivered_queue_time_seconds', type: 'histogram',
    help: 'Time from queueing to delivery, of delivered messages.',
    buckets: [0.1, 1, 10, 60, 300, 1800, 3600, 21600, 86400, 432000],
  },
  queueMessages: {
    name: 'smtp_receive_queue_messages', type: 'gauge', labels: ['state'],
    help: 'Messages in the queue, by state (queued: waiting or being delivered; hold).',
  },
  queueOldestAge: {
    name: 'smtp_receive_queue_oldest_message_age_seconds', type: 'gauge',
    help: 'Age of the oldest message in the queue (0 when empty).',
  },
  queueDue: {
    name: 'smtp_receive_queue_due_messages', type: 'gauge',
    help: 'Messages due for a delivery attempt now and not being delivered: the runner\'s backlog.',
  },
  queueLeases: {
    name: 'smtp_receive_queue_leases', type: 'gauge',
    help: 'Messages being delivered now (leased by a runner).',
  },
  workerThreads: {
    name: 'smtp_receive_worker_threads', type: 'gauge', labels: ['state'],
    help: 'Worker threads by state: ready, or configured (the fixed pool size).',
  },
  workerQueue: {
    name: 'smtp_receive_worker_queue_length', type: 'gauge',
    help: 'Tasks (predeliver, deliver) waiting for a free worker.',
  },
  workerBusy: {
    name: 'smtp_receive_worker_busy_seconds_total', type: 'counter',
    help: 'Time worker threads spent running tasks; rate() ÷ threads = pool utilisation.',
  },
  workerWait: {
    name: 'smtp_receive_worker_wait_seconds_total', type: 'counter',
    help: 'Time tasks waited for a free worker; rate() ÷ rate(tasks) = mean wait.',
  },
  workerTasks: {
    name: 'smtp_receive_worker_tasks_total', type: 'counter',
    help: 'Tasks the worker pool completed.',
  },
  commit: {
    name: 'smtp_receive_lmdb_commit_seconds', type: 'histogram',
    help: 'Enqueue commit time: from the write to the transaction flushed to disk (group commit).',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  },
} as const satisfies Record<string, MetricDef>;

/**
 * prom-client's default metrics that the dashboard uses (they are in the same
 * registry: process CPU and memory, heap, event-loop delay from
 * perf_hooks.monitorEventLoopDelay, reset at each scrape).
 */
export const PROCESS_METRICS = {
  cpu: 'process_cpu_seconds_total',
  residentMemory: 'process_resident_memory_bytes',
  heapUsed: 'nodejs_heap_size_used_bytes',
  eventLoopP50: 'nodejs_eventloop_lag_p50_seconds',
  eventLoopP99: 'nodejs_eventloop_lag_p99_seconds',
  eventLoopMax: 'nodejs_eventloop_lag_max_seconds',
} as const;

/** Default metrics left out: gauges whose names end in `_total`, which promtool rejects. */
export const EXCLUDED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;
