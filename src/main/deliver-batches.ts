/**
 * Hands delivery attempts to the worker pool in batches: the attempts asked
 * for in one turn of the event loop (the messages of one group commit, a page
 * of due messages) go out as a few tasks, not one task each — one message to
 * a worker and one back for several, which is most of what an attempt costs
 * the main thread when `deliver` itself is quick. A batch is spread over the
 * workers (at least MIN_SHARE attempts each, at most MAX_BATCH in a task).
 *
 * A task's time limit is the deliver limit (its attempts run concurrently).
 * An attempt that ends while batch-mates still run comes back before the task
 * does (src/workers/deliver-batch.ts): its slot and its outcome do not wait
 * for a slow batch-mate. When the pool ends a worker at the limit, the
 * attempts that had finished have their outcomes already; the others get the
 * pool's failure.
 */
import { isDeliverPartial, type DeliverItem, type DeliverOutcome, type PoolFailure } from '../core/tasks.ts';
import type { WorkerPool } from './pool.ts';

const MAX_BATCH = 16;
const MIN_SHARE = 4;
/** While tasks are out, attempts gather this long before the next batch goes. */
const GATHER_MS = 5;

export type AttemptOutcome = DeliverOutcome | PoolFailure;

interface Waiting {
  item: DeliverItem;
  resolve: (outcome: AttemptOutcome) => void;
  /** Its outcome came (early, or with the task's result). */
  done?: boolean;
}

export class DeliveryBatcher {
  private waiting: Waiting[] = [];
  private scheduled: NodeJS.Immediate | NodeJS.Timeout | undefined;
  /** Tasks sent and not answered. */
  private inFlight = 0;
  private seq = 0;
  /** Batches of several attempts in flight, by batch id: their early outcomes resolve them. */
  private readonly open = new Map<string, Waiting[]>();
  private unlisten: (() => void) | undefined;

  constructor(private readonly pool: WorkerPool, private readonly timeoutMs: number, private readonly owner: string) {}

  /** One attempt; resolves with its outcome (never rejects). */
  run(item: DeliverItem): Promise<AttemptOutcome> {
    return new Promise((resolve) => {
      this.waiting.push({ item, resolve });
      // idle: at once (after this event turn); busy: gather a little longer, for a larger batch
      this.scheduled ??= this.inFlight === 0 ? setImmediate(() => this.dispatch()) : setTimeout(() => this.dispatch(), GATHER_MS);
    });
  }

  /** Stops listening for early outcomes (after the last batch). */
  close(): void {
    this.unlisten?.();
    this.unlisten = undefined;
  }

  private dispatch(): void {
    this.scheduled = undefined;
    const all = this.waiting;
    this.waiting = [];
    const n = all.length;
    const tasks = Math.max(1, Math.min(this.pool.size, Math.ceil(n / MIN_SHARE)), Math.ceil(n / MAX_BATCH));
    for (let t = 0, from = 0; t < tasks; t++) {
      const to = Math.round(((t + 1) * n) / tasks);
      void this.send(all.slice(from, to));
      from = to;
    }
  }

  private async send(batch: Waiting[]): Promise<void> {
    const id = `${this.owner}:${++this.seq}`;
    if (batch.length > 1) {
      this.listen();
      this.open.set(id, batch);
    }
    this.inFlight++;
    const result = await this.pool.run({ kind: 'deliver', items: batch.map((w) => w.item), batch: id, reportAt: 0 }, this.timeoutMs); // reportAt: set by the pool when a worker takes it
    this.inFlight--;
    this.open.delete(id);
    for (const [i, w] of batch.entries()) {
      if (w.done) continue;
      w.done = true;
      w.resolve(result.ok ? result.results[i]! : result);
    }
  }

  private listen(): void {
    this.unlisten ??= this.pool.onWorkerMessage((m) => {
      if (!isDeliverPartial(m)) return;
      const batch = this.open.get(m.batch); // (another runner's batch, or one whose result came first: not ours to settle)
      if (!batch) return;
      for (const [i, outcome] of m.results) {
        const w = batch[i];
        if (!w || w.done) continue;
        w.done = true;
        w.resolve(outcome);
      }
    });
  }
}
