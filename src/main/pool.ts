/**
 * The worker pool client: a fixed-size Piscina pool that runs the user's hooks
 * off the main thread. Every failure mode (queue full, time limit, a worker
 * that dies) comes back as a tagged result, never as a thrown error.
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import type { PoolFailure, ResultOf, Task, WorkerSetup } from '../core/tasks.ts';
import { receiveWorkerLogs } from './log/worker-lines.ts';

export interface PoolOptions {
  /** Worker threads, fixed (minThreads = maxThreads). @default os.availableParallelism() */
  size?: number;
  /** Tasks that may wait for a worker before new ones are refused (451 4.3.2). @default 256 */
  maxQueue?: number;
}

// The worker entry: worker.js once built; from the TypeScript sources, a bootstrap that loads tsx first.
const fromSources = import.meta.url.endsWith('.ts');
const WORKER = new URL(fromSources ? '../workers/dev-entry.mjs' : '../workers/worker.js', import.meta.url).href;

export class WorkerPool {
  private readonly pool: Piscina<Task, unknown>;
  readonly size: number;

  constructor(setup: WorkerSetup, options: PoolOptions = {}) {
    this.size = options.size ?? availableParallelism();
    receiveWorkerLogs();
    this.pool = new Piscina<Task, unknown>({
      filename: WORKER,
      minThreads: this.size,
      maxThreads: this.size,
      // a fixed pool: with Piscina's defaults idle threads are torn down and re-created
      idleTimeout: 2 ** 31 - 1,
      maxQueue: options.maxQueue ?? 256,
      workerData: setup,
    });
    // a worker that fails to start (bad receiver module) is reported per task, not as a crash
    this.pool.on('error', () => {});
  }

  /** Runs a task within `timeoutMs`; a late task's worker is terminated (and replaced). */
  async run<T extends Task>(task: T, timeoutMs: number): Promise<ResultOf[T['kind']] | PoolFailure> {
    if (this.pool.queueSize >= this.pool.options.maxQueue) {
      return { ok: false, pool: 'busy', error: 'worker queue is full' };
    }
    try {
      return (await this.pool.run(task, { signal: AbortSignal.timeout(timeoutMs) })) as ResultOf[T['kind']];
    } catch (err) {
      const e = err as Error;
      if (e.name === 'AbortError' || e.name === 'TimeoutError') {
        return { ok: false, pool: 'timeout', error: `${task.kind} ran past its time limit of ${timeoutMs} ms` };
      }
      if (/queue is at limit|No task queue available/i.test(e.message)) {
        return { ok: false, pool: 'busy', error: 'worker queue is full' };
      }
      return { ok: false, pool: 'crashed', error: `${task.kind} worker failed: ${e.stack ?? e.message}` };
    }
  }

  /**
   * Waits until the workers have loaded the receiver module (so the first real
   * task's time limit is not spent on start-up); throws when they cannot.
   */
  async ready(timeoutMs = 60_000): Promise<void> {
    const results = await Promise.all(Array.from({ length: this.size }, () => this.run({ kind: 'ping' }, timeoutMs)));
    const failed = results.find((r) => !r.ok);
    if (failed && isPoolFailure(failed)) throw new Error(`the worker pool did not start: ${failed.error}`);
  }

  /** Tasks waiting for a worker. */
  get queueSize(): number {
    return this.pool.queueSize;
  }

  /**
   * Ends the workers now: tasks still running (a hook that hangs) are cut short.
   * Callers wait for what they want to finish first (the runner's shutdown grace).
   */
  async close(): Promise<void> {
    await this.pool.destroy();
  }
}

export function isPoolFailure(r: { ok: boolean }): r is PoolFailure {
  return !r.ok && 'pool' in r;
}
