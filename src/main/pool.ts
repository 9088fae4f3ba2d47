/**
 * The worker pool client: a fixed-size Piscina pool that runs the user's hooks
 * off the main thread. Every failure mode (queue full, time limit, a worker
 * that dies) comes back as a tagged result, never as a thrown error.
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { Replies } from '../core/reply.ts';
import type { Task, TaskResult, WorkerSetup } from '../core/tasks.ts';

export interface PoolOptions {
  /** Worker threads, fixed (minThreads = maxThreads). @default os.availableParallelism() */
  size?: number;
  /** Tasks that may wait for a worker before new ones are refused (451 4.3.2). @default 256 */
  maxQueue?: number;
}

// The worker entry next to this module: worker.ts under tsx, worker.js once built.
const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const WORKER = new URL(`../workers/worker${ext}`, import.meta.url).href;

function internal(error: string, reply = Replies.localError): TaskResult {
  return { ok: false, reply: reply.toData(), internal: true, error };
}

export class WorkerPool {
  private readonly pool: Piscina<Task, TaskResult>;

  constructor(setup: WorkerSetup, options: PoolOptions = {}) {
    const size = options.size ?? availableParallelism();
    this.pool = new Piscina<Task, TaskResult>({
      filename: WORKER,
      minThreads: size,
      maxThreads: size,
      // a fixed pool: with Piscina's defaults idle threads are torn down and re-created
      idleTimeout: 2 ** 31 - 1,
      maxQueue: options.maxQueue ?? 256,
      workerData: setup,
    });
    // a worker that fails to start (bad receiver module) is reported per task, not as a crash
    this.pool.on('error', () => {});
  }

  /** Runs a task within `timeoutMs`; a late task's worker is terminated (and replaced). */
  async run(task: Task, timeoutMs: number, transferList?: ArrayBuffer[]): Promise<TaskResult> {
    if (this.pool.queueSize >= this.pool.options.maxQueue) return { ok: false, reply: Replies.busy.toData(), internal: false };
    try {
      return await this.pool.run(task, { signal: AbortSignal.timeout(timeoutMs), transferList });
    } catch (err) {
      const e = err as Error;
      if (e.name === 'AbortError' || e.name === 'TimeoutError') return internal(`${task.kind} ran past its time limit of ${timeoutMs} ms`);
      if (/queue is at limit|No task queue available/i.test(e.message)) {
        return { ok: false, reply: Replies.busy.toData(), internal: false };
      }
      return internal(`${task.kind} worker failed: ${e.stack ?? e.message}`);
    }
  }

  get queueSize(): number {
    return this.pool.queueSize;
  }

  async close(): Promise<void> {
    await this.pool.close({ force: true });
  }
}
