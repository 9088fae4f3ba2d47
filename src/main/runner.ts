/**
 * The queue runner: finds due messages through the LMDB due index, leases them
 * (an atomic claim with an expiry, so two runners — the daemon's and a pass
 * that `runqueue` asked for — never deliver one message at the same time), runs `deliver` in
 * the worker pool, and records the outcome: delivered → record and file gone;
 * not yet → fields persisted and the next attempt scheduled with backoff;
 * too old → on hold, and the `expired` hook runs.
 */
import { unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { events } from '../core/events.ts';
import { log } from '../core/log.ts';
import { DEFAULT_RETRY, isExpired, retryDelay, type RetryPolicy } from '../core/schedule.ts';
import { dueAt, type Lease, type QueueRecord, type QueueStore } from '../core/store.ts';
import { DeliveryBatcher } from './deliver-batches.ts';
import { isPoolFailure, type WorkerPool } from './pool.ts';

export interface RunnerOptions {
  retry?: Partial<RetryPolicy>;
  /** Time limit of one deliver, ms; a late worker is terminated. @default 300000 */
  deliverTimeout?: number;
  /** How long a claim holds, ms. @default deliverTimeout + 60000 */
  leaseMs?: number;
  /** Deliveries in flight at once (several per worker: they share tasks and commits). @default 32 × the pool size */
  concurrency?: number;
  /** The daemon looks for due messages at least this often, ms (queue commands also wake it). @default 5000 */
  pollInterval?: number;
  /** Injectable clock (ms since the epoch). */
  now?: () => number;
  /** Keep each deferred or held message's id and reason in `notDelivered` (one-pass runners: runqueue). */
  recordNotDelivered?: boolean;
  /** Injectable randomness for the retry jitter. */
  random?: () => number;
}

/** A message a pass attempted and did not deliver: deferred (retried later) or held (expired). */
export interface NotDelivered {
  id: string;
  state: 'deferred' | 'held';
  error: string;
}

export interface RunSummary {
  attempted: number;
  delivered: number;
  deferred: number;
  held: number;
  /** Not attempted: leased by another runner, on hold, or gone. */
  skipped: number;
}

export class QueueRunner {
  readonly owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  private readonly retry: RetryPolicy;
  private readonly deliverTimeout: number;
  private readonly leaseMs: number;
  private readonly concurrency: number;
  private readonly pollInterval: number;
  readonly now: () => number;
  private readonly random: () => number;
  /** Attempts running (in the pool): each holds one of `concurrency`'s slots. */
  private readonly active = new Set<string>();
  /** Attempts whose outcome waits to be committed (no longer holding a slot). */
  private writing = 0;
  private reserved = 0;
  private pumping = false;
  private running = false;
  private stopping = false;
  private timer: NodeJS.Timeout | undefined;
  private flushing: NodeJS.Immediate | undefined;
  /** A look for due messages is set for the end of this event turn (pumpSoon). */
  private pumpQueued = false;
  private readonly batcher: DeliveryBatcher;
  private readonly idle: Array<() => void> = [];
  private readonly slots: Array<() => void> = [];
  readonly totals: RunSummary = { attempted: 0, delivered: 0, deferred: 0, held: 0, skipped: 0 };
  /** With `recordNotDelivered`: the messages attempted and not delivered, with why. */
  readonly notDelivered: NotDelivered[] = [];
  private readonly recordNotDelivered: boolean;

  constructor(private readonly store: QueueStore, private readonly pool: WorkerPool, o: RunnerOptions = {}) {
    this.retry = { ...DEFAULT_RETRY, ...o.retry };
    this.deliverTimeout = o.deliverTimeout ?? 300_000;
    this.leaseMs = o.leaseMs ?? this.deliverTimeout + 60_000;
    this.concurrency = o.concurrency ?? pool.size * 32;
    this.pollInterval = o.pollInterval ?? 5000;
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
    this.recordNotDelivered = o.recordNotDelivered ?? false;
    this.batcher = new DeliveryBatcher(pool, this.deliverTimeout, this.owner);
  }

  /** Looks for due messages now (after a flush, release or requeue made some due). */
  wake(): void {
    this.pump();
  }

  /** Daemon mode: keep delivering due messages until stop(). */
  start(): void {
    this.running = true;
    this.pump();
  }

  /**
   * Stops looking for work and waits up to `graceMs` for deliveries in flight.
   * Returns the ids still in flight then (their workers are about to be ended:
   * pass them to `releaseLeases` so another runner can take them at once).
   */
  async stop(graceMs = 10_000): Promise<string[]> {
    this.running = false;
    this.stopping = true;
    clearTimeout(this.timer);
    void this.store.flushLater(); // outcomes waiting for a commit to join
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.whenIdle(), new Promise<void>((r) => { timer = setTimeout(r, graceMs); })]);
    clearTimeout(timer);
    this.batcher.close();
    return [...this.active];
  }

  /** Gives up our leases on `ids` (attempts cut short by a shutdown): due again now. */
  async releaseLeases(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const now = this.now();
    await this.store.batch(() => {
      for (const id of ids) {
        this.store.updateSync(id, (r) => {
          if (r.lease?.owner !== this.owner) return undefined;
          const { lease: _lease, ...rest } = r;
          return { ...rest, nextAttempt: now };
        });
      }
    });
    log.info('released %d lease(s) of deliveries cut short', ids.length);
  }

  private whenIdle(): Promise<void> {
    if (this.active.size === 0 && this.writing === 0 && this.reserved === 0 && !this.pumping) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private settle(): void {
    if (this.active.size === 0 && this.writing === 0 && this.reserved === 0 && !this.pumping) for (const f of this.idle.splice(0)) f();
  }

  /**
   * For a message about to be committed: a lease to write into its record when
   * the runner can attempt it at once (then call `enqueued` or `cancel`).
   */
  reserve(): Lease | undefined {
    if (!this.running || this.active.size + this.reserved >= this.concurrency) return undefined;
    this.reserved++;
    return { owner: this.owner, until: this.now() + this.leaseMs };
  }

  cancel(): void {
    this.reserved--;
    this.settle();
  }

  /**
   * The record (with our lease) is committed: attempt it now, without
   * re-reading it (nor its inline body, when given).
   */
  enqueued(record: QueueRecord, inline?: Uint8Array): void {
    this.reserved--;
    // the task carries its whole ArrayBuffer: a small body may be a view into Node's 8 KiB buffer pool
    const own = inline && inline.byteLength !== inline.buffer.byteLength ? new Uint8Array(inline) : inline;
    void this.attempt(record, own);
  }

  /** One pass (the `runqueue` command): all due messages, or the given ids whether due or not. */
  async runOnce(ids?: string[]): Promise<RunSummary> {
    const before = { ...this.totals };
    if (ids) {
      const claimed = await this.claim(ids, false);
      this.totals.skipped += ids.length - claimed.length;
      await Promise.all(claimed.map((r) => this.attempt(r)));
    } else {
      // bounded: every claimed or leased message leaves the due range, so pages shrink
      for (let page = 0; page < 1_000_000 && !this.stopping; page++) {
        const free = Math.max(1, this.concurrency - this.active.size);
        this.store.refresh();
        const due = this.store.dueIds(this.now(), free).filter((id) => !this.active.has(id));
        if (due.length === 0) break;
        const claimed = await this.claim(due, true);
        this.totals.skipped += due.length - claimed.length;
        if (claimed.length === 0) break;
        for (const r of claimed) void this.attempt(r);
        while (this.active.size >= this.concurrency) await new Promise<void>((r) => this.slots.push(r));
      }
      await this.whenIdle();
    }
    const t = this.totals;
    return {
      attempted: t.attempted - before.attempted, delivered: t.delivered - before.delivered,
      deferred: t.deferred - before.deferred, held: t.held - before.held, skipped: t.skipped - before.skipped,
    };
  }

  /** Claims messages atomically (one transaction); returns the records now leased to us. */
  private async claim(ids: string[], dueOnly: boolean): Promise<QueueRecord[]> {
    const now = this.now();
    const lease: Lease = { owner: this.owner, until: now + this.leaseMs };
    const claimed = await this.store.batch(() => ids.map((id) => this.store.updateSync(id, (r) => {
      if (r.state !== 'queued' || (r.lease && r.lease.until > now)) return undefined;
      if (dueOnly && (dueAt(r) ?? Infinity) > now) return undefined;
      return { ...r, lease };
    })));
    return claimed.filter((r): r is QueueRecord => !!r);
  }

  /**
   * Looks for due messages once at the end of this event turn, however many
   * attempts ended in it (a batch's outcomes come back together): each look
   * reads the due index.
   */
  private pumpSoon(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    setImmediate(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }

  private pump(): void {
    if (!this.running || this.pumping) return;
    clearTimeout(this.timer);
    const free = this.concurrency - this.active.size - this.reserved;
    if (free <= 0) return; // a finishing attempt pumps again
    const now = this.now();
    this.store.refresh(); // see what other threads committed
    const due = this.store.dueIds(now, free).filter((id) => !this.active.has(id));
    if (due.length === 0) {
      const next = this.store.nextDue();
      const wait = next === undefined ? this.pollInterval : Math.min(this.pollInterval, Math.max(10, next - now));
      this.timer = setTimeout(() => this.pump(), wait).unref();
      return;
    }
    this.pumping = true;
    this.claim(due, true).then(
      (claimed) => {
        this.pumping = false;
        for (const r of claimed) void this.attempt(r);
        if (claimed.length > 0) this.pump();
        else this.timer = setTimeout(() => this.pump(), this.pollInterval).unref();
        this.settle();
      },
      (err: Error) => {
        this.pumping = false;
        log.error('runner: claiming due messages failed: %s', err.stack);
        this.timer = setTimeout(() => this.pump(), this.pollInterval).unref();
        this.settle();
      },
    );
  }

  /**
   * Writes an attempt's outcome. The daemon's join the next commit (an
   * enqueue's, or one within the store's `laterMs`): a delivered message's
   * removal needs no fsync of its own, since a crash before it only means
   * delivering again. A one-pass runner, or one stopping, commits them at the
   * end of the event turn (the outcomes of one batch in one commit).
   */
  private write(id: string, change: (r: QueueRecord) => QueueRecord | null | undefined): Promise<QueueRecord | null | undefined> {
    const written = this.store.updateLater(id, change);
    if (!this.running) {
      this.flushing ??= setImmediate(() => {
        this.flushing = undefined;
        void this.store.flushLater();
      });
    }
    return written;
  }

  private async attempt(record: QueueRecord, inline?: Uint8Array): Promise<void> {
    const id = record.msg.id;
    this.active.add(id);
    this.totals.attempted++;
    let freed = false;
    // the outcome is known: its slot goes to the next attempt while the outcome waits for its commit
    const free = (): void => {
      freed = true;
      this.active.delete(id);
      this.writing++;
      for (const f of this.slots.splice(0)) f();
      this.pumpSoon();
    };
    const started = performance.now();
    let ms = 0;
    let queuedMs = 0;
    const publish = events.delivery.hasSubscribers
      ? (outcome: 'delivered' | 'deferred' | 'expired' | 'error', more?: { reason?: string; nextAttempt?: number; failed?: string[] }): void => {
        events.delivery.publish({ id, outcome, attempt: record.attempts + 1, ms, queuedMs, ...more });
      }
      : undefined;
    try {
      const result = await this.batcher.run({
        message: record.msg, storage: record.storage, head: record.head,
        delivered: record.delivered ?? [], attempts: record.attempts, ...(inline ? { inline } : {}),
      });
      // the attempt's times, not the wait for the commit its outcome joins
      if (publish) {
        ms = performance.now() - started;
        queuedMs = this.now() - record.msg.time;
      }
      // (cut short by our own shutdown: it stays active, for stop() to release its lease)
      if (!(this.stopping && isPoolFailure(result))) free();
      if (result.ok && result.done) {
        // only while our lease holds: an operator may have deleted or requeued it, or another runner taken it
        const removed = await this.write(id, (r) => (r.lease?.owner === this.owner ? null : undefined));
        if (removed !== null) log.warn('%s: delivered, but its lease was lost meanwhile; record left as it is', id);
        // the file goes after the record: a crash in between leaves an orphan, removed at start-up
        else if (result.textFileExists) await unlink(record.msg.textFile).catch(() => {});
        this.totals.delivered++;
        publish?.('delivered', result.failed ? { failed: result.failed } : undefined);
        // recipients failed for good count as done (the worker decided); their failed() hook has run
        return;
      }
      // cut short by our own shutdown: not an attempt to count; releaseLeases makes it due again
      if (this.stopping && isPoolFailure(result)) return;
      const now = this.now();
      const error = result.ok ? (result.error ?? 'not yet delivered') : firstLine(result.error);
      if (!result.ok) log.error('%s: deliver failed: %s', id, isPoolFailure(result) ? result.error : result.error);
      const msg = { ...((result.ok && result.message) || record.msg), error, lastRun: now };
      const attempts = record.attempts + 1;
      const expired = isExpired(this.retry, record.lifetimeFrom ?? msg.time, now);
      const next: QueueRecord = {
        ...record, msg, attempts, lease: undefined, state: expired ? 'hold' : 'queued',
        delivered: result.ok ? result.delivered : record.delivered,
        nextAttempt: now + retryDelay(this.retry, attempts, this.random),
      };
      delete next.lease;
      const written = await this.write(id, (r) => (r.lease?.owner === this.owner ? next : undefined));
      if (!written) log.warn('%s: lease lost during delivery; outcome not recorded', id);
      publish?.(expired && written ? 'expired' : result.ok ? 'deferred' : 'error', { reason: error, nextAttempt: expired && written ? undefined : next.nextAttempt });
      if (this.recordNotDelivered) this.notDelivered.push({ id, state: expired && written ? 'held' : 'deferred', error });
      if (expired && written) {
        this.totals.held++;
        const r = await this.pool.run({ kind: 'expired', message: msg, attempts }, this.deliverTimeout);
        if (!r.ok) log.error('%s: expired hook failed: %s', id, r.error);
      } else {
        this.totals.deferred++;
      }
    } catch (err) {
      log.error('%s: recording the delivery outcome failed: %s', id, (err as Error).stack);
    } finally {
      if (freed) {
        this.writing--;
      } else {
        this.active.delete(id);
        for (const f of this.slots.splice(0)) f();
      }
      this.settle();
      this.pumpSoon();
    }
  }
}

function firstLine(s: string): string {
  const nl = s.indexOf('\n');
  return nl < 0 ? s : s.slice(0, nl);
}
