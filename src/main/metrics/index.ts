/**
 * Metrics and health for a running daemon: the registry fed by its events and
 * the HTTP listener serving it, with the readiness checks.
 */
import { statfsSync } from 'node:fs';
import type { QueueStore } from '../../core/store.ts';
import type { WorkerPool } from '../pool.ts';
import type { MetricsAddress } from './address.ts';

export interface Monitoring {
  host: string;
  port: number;
  /** Reasons /readyz gives now (empty: ready). */
  notReady(): string[];
  /** /readyz says 503 "shutting down" from now on. */
  stopping(): void;
  close(): Promise<void>;
}

export interface MonitoredParts {
  store: QueueStore;
  pool: WorkerPool;
  /** Is the SMTP listener accepting connections? */
  listening(): boolean;
}

/** Below this much free space in the queue's file system the daemon is not ready (a spooled message would not fit). */
export const MIN_FREE_BYTES = 1024 * 1024;

/** Why the daemon cannot take mail now (empty: it can). */
export function readiness(parts: MonitoredParts, shuttingDown: boolean): string[] {
  const reasons: string[] = [];
  if (shuttingDown) reasons.push('shutting down');
  if (!parts.listening()) reasons.push('the SMTP listener is not listening');
  if (!parts.store.isOpen) reasons.push(`the queue store (${parts.store.queueDir}) is not open`);
  else {
    try {
      const fs = statfsSync(parts.store.queueDir);
      const free = fs.bavail * fs.bsize;
      if (free < MIN_FREE_BYTES) reasons.push(`the queue's file system (${parts.store.queueDir}) is full: ${Math.floor(free / 1024)} KiB free`);
    } catch (err) {
      reasons.push(`the queue directory cannot be checked: ${(err as Error).message}`);
    }
  }
  const pool = parts.pool.stats();
  if (pool.ready <= 0) reasons.push(`the worker pool has no worker ready (0 of ${pool.size}: workers are starting, or fail to start)`);
  return reasons;
}

export async function startMonitoring(address: MetricsAddress, parts: MonitoredParts): Promise<Monitoring> {
  // prom-client and node:http load only now: with --metrics off a process never pays for them (~0.1–0.6 s of start-up)
  const [{ createMetrics }, { startMetricsServer }] = await Promise.all([import('./registry.ts'), import('./http.ts')]);
  const metrics = createMetrics(parts);
  let shuttingDown = false;
  const notReady = (): string[] => readiness(parts, shuttingDown);
  try {
    const server = await startMetricsServer({ ...address, registry: metrics.registry, notReady });
    return {
      host: server.host,
      port: server.port,
      notReady,
      stopping: () => { shuttingDown = true; },
      async close() {
        metrics.stop();
        await server.close();
      },
    };
  } catch (err) {
    metrics.stop();
    throw err;
  }
}
