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

/**
 * A task's time limit, in the shape Piscina takes as a signal (`aborted`,
 * `once('abort')`, `removeListener`). Not an AbortSignal.timeout(): each of
 * those stays in memory with its timer until the limit passes, even when the
 * task ended long before — at thousands of tasks a second with a 300 s
 * delivery limit, hundreds of MB. This one's timer is cleared when the task ends.
 */
class TaskDeadline {
  aborted = false;
  reason: Error | undefined;
  private listener: (() => void) | undefined;

  once(_event: 'abort', listener: () => void): void {
    this.listener = listener;
  }

  removeListener(): void {
    this.listener = undefined;
  }

  expire(reason: Error): void {
    this.aborted = true;
    this.reason = reason;
    const listener = this.listener;
    this.listener = undefined;
    listener?.();
  }
}

interface Job {
  task: Task;
  timeoutMs: number;
  queuedAt: number;
  resolve: (result: ResultOf[Task['kind']] | PoolFailure) => void;
  /** performance.now() by which a task a client waits for must end, its wait included. */
  deadlineAt?: number;
  /** Its time limit while it waits (those tasks only). */
  waiting?: NodeJS.Timeout;
}

function timedOut(task: Task, timeoutMs: number): PoolFailure {
  return { ok: false, pool: 'timeout', error: `${task.kind} ran past its time limit of ${timeoutMs} ms` };
}

export class WorkerPool {
  private readonly pool: Piscina<Task, unknown>;
  readonly size: number;
  /** Workers that have loaded the receiver module and take tasks (a replaced worker is not, until loaded). */
  private ready_ = 0;
  private readonly maxQueue: number;
  /** Tasks waiting for a worker: checks a client waits for, then the rest. */
  private readonly urgent: Job[] = [];
  private readonly later: Job[] = [];
  /** Tasks handed to Piscina and not answered: at most one per worker. */
  private running = 0;
  /** ms the tasks handed to Piscina waited here first. */
  private waited = 0;

  constructor(setup: WorkerSetup, options: PoolOptions = {}) {
    this.size = options.size ?? availableParallelism();
    this.maxQueue = options.maxQueue ?? 256;
    receiveWorkerLogs();
    this.pool = new Piscina<Task, unknown>({
      filename: WORKER,
      minThreads: this.size,
      maxThreads: this.size,
      // a fixed pool: with Piscina's defaults idle threads are torn down and re-created
      idleTimeout: 2 ** 31 - 1,
      // tasks wait in run() until a worker is free: Piscina's queue holds only a task whose worker is being replaced
      maxQueue: 'auto',
      workerData: setup,
    });
    // a worker that fails to start (bad receiver module) is reported per task, not as a crash
    this.pool.on('error', () => {});
    // Piscina announces a worker once it is ready (its module loaded) and again when it is gone
    this.pool.on('workerCreate', () => { this.ready_++; });
    this.pool.on('workerDestroy', () => { this.ready_--; });
  }

  /**
   * Runs a task within `timeoutMs`, counted from when a worker takes it; a
   * late task's worker is terminated (and replaced). Tasks wait here, not in
   * Piscina, for a worker: a `predeliver` check (a client is waiting for its
   * reply) or a `ping` goes ahead of the deliveries waiting, and its limit
   * counts its wait (the client's); the limit of the others does not.
   */
  run<T extends Task>(task: T, timeoutMs: number): Promise<ResultOf[T['kind']] | PoolFailure> {
    if (this.urgent.length + this.later.length >= this.maxQueue) {
      return Promise.resolve({ ok: false, pool: 'busy', error: 'worker queue is full' });
    }
    return new Promise((resolve) => {
      const job: Job = { task, timeoutMs, queuedAt: performance.now(), resolve: resolve as Job['resolve'] };
      if (task.kind === 'predeliver' || task.kind === 'ping') {
        // a client waits for this one: its limit counts the wait too (a 451 rather than no reply)
        job.deadlineAt = job.queuedAt + timeoutMs;
        job.waiting = setTimeout(() => {
          this.urgent.splice(this.urgent.indexOf(job), 1);
          resolve(timedOut(task, timeoutMs));
        }, timeoutMs);
        this.urgent.push(job);
      } else {
        this.later.push(job);
      }
      this.next();
    });
  }

  /** Hands waiting tasks to Piscina while a worker is free for them, the urgent ones first. */
  private next(): void {
    while (this.running < this.size) {
      const job = this.urgent.shift() ?? this.later.shift();
      if (!job) return;
      this.running++;
      clearTimeout(job.waiting);
      this.waited += performance.now() - job.queuedAt;
      void this.start(job).then((result) => {
        this.running--;
        job.resolve(result);
        this.next();
      });
    }
  }

  private async start(job: Job): Promise<ResultOf[Task['kind']] | PoolFailure> {
    const { task } = job;
    const timeoutMs = job.deadlineAt === undefined ? job.timeoutMs : Math.max(1, Math.round(job.deadlineAt - performance.now()));
    // a delivery batch reports each outcome at once from a little before its limit (src/workers/deliver-batch.ts)
    if (task.kind === 'deliver') task.reportAt = Date.now() + timeoutMs - Math.min(1000, timeoutMs / 10);
    const deadline = new TaskDeadline();
    const timer = setTimeout(() => deadline.expire(new Error(`${task.kind} ran past its time limit of ${timeoutMs} ms`)), timeoutMs);
    try {
      return (await this.pool.run(task, { signal: deadline as unknown as AbortSignal })) as ResultOf[Task['kind']];
    } catch (err) {
      const e = err as Error;
      if (deadline.aborted) return timedOut(task, job.timeoutMs);
      if (/queue is at limit|No task queue available/i.test(e.message)) {
        return { ok: false, pool: 'busy', error: 'worker queue is full' };
      }
      return { ok: false, pool: 'crashed', error: `${task.kind} worker failed: ${e.stack ?? e.message}` };
    } finally {
      clearTimeout(timer);
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

  /**
   * Messages a worker posts on its own, outside a task's result (a delivery
   * batch's early outcomes). Returns the function that stops listening.
   */
  onWorkerMessage(listener: (message: unknown) => void): () => void {
    this.pool.on('message', listener);
    return () => { this.pool.off('message', listener); };
  }

  /** Tasks waiting for a worker. */
  get queueSize(): number {
    return this.urgent.length + this.later.length + this.pool.queueSize;
  }

  /** For metrics and readiness: workers ready, and Piscina's run and wait time totals. */
  stats(): PoolStats {
    const h = this.pool.histogram;
    // Piscina records times in microseconds; mean × count is the total
    const total = (s: { mean: number } | undefined, n: number): number => (s && n > 0 && Number.isFinite(s.mean) ? (s.mean * n) / 1e6 : 0);
    const completed = this.pool.completed;
    // the number of timed runs is on Piscina's handler behind the summary (tasks cut short before they ran are not)
    const runs = (h as unknown as { histogram?: { runTimeCount?: number } }).histogram?.runTimeCount ?? completed;
    return {
      size: this.size, ready: this.ready_, queueSize: this.pool.queueSize, completed,
      busySeconds: total(h.runTime, runs), waitSeconds: this.waited / 1000 + total(h.waitTime, runs),
    };
  }

  /**
   * Ends the workers now: tasks still running (a hook that hangs) are cut short.
   * Callers wait for what they want to finish first (the runner's shutdown grace).
   */
  async close(): Promise<void> {
    // the tasks still waiting for a worker end as Piscina ends its own queued ones
    for (const job of [...this.urgent.splice(0), ...this.later.splice(0)]) {
      clearTimeout(job.waiting);
      job.resolve({ ok: false, pool: 'crashed', error: `${job.task.kind}: the worker pool was closed before a worker took it` });
    }
    await this.pool.destroy();
  }
}

export interface PoolStats {
  size: number;
  ready: number;
  queueSize: number;
  completed: number;
  busySeconds: number;
  waitSeconds: number;
}

export function isPoolFailure(r: { ok: boolean }): r is PoolFailure {
  return !r.ok && 'pool' in r;
}
