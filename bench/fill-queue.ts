/** Bulk queue filling for the scale benchmarks, and opening a queue no daemon owns. */
import { join } from 'node:path';
import { newId } from '../src/core/id.ts';
import { QueueLock } from '../src/core/lock.ts';
import { QueueStore, dueAt, type QueueRecord } from '../src/core/store.ts';

export interface OwnedStore {
  store: QueueStore;
  lock: QueueLock;
  /** Closes the store and gives the queue up (for serve or a queue command to take). */
  close(): Promise<void>;
}

/**
 * Opens a queue as its one owner (QueueStore.openOwned): the queue's lock —
 * waiting up to `waitMs` for a stopping daemon or a queue command — then the
 * store. Only where no daemon runs on the queue; close() before starting one.
 */
export async function ownStore(queueDir: string, waitMs = 30_000): Promise<OwnedStore> {
  const store = await QueueStore.openOwned(queueDir, { waitMs });
  return { store, lock: QueueLock.held(queueDir)!, close: () => store.close() };
}

/**
 * Fills a queue fast, bypassing SMTP: batches of 1,000 records (inline bodies)
 * per LMDB transaction; `dueFraction` of them due now, the rest in a day.
 * Returns the insert rate over the first and the last tenth of the fill.
 */
export async function fillQueue(store: QueueStore, n: number, now: number, dueFraction: number, body: Buffer): Promise<{ firstRate: number; lastRate: number }> {
  // 1,000 per transaction: much larger write transactions make LMDB spill dirty pages, a path to avoid
  const batch = 1000;
  const rates: number[] = [];
  for (let done = 0; done < n; done += batch) {
    const t0 = performance.now();
    const count = Math.min(batch, n - done);
    await store.batch(() => {
      for (let i = 0; i < count; i++) {
        const k = done + i;
        const id = newId();
        const due = k % Math.round(1 / dueFraction) === 0;
        const record: QueueRecord = {
          v: 1, state: 'queued', storage: 'inline', attempts: 0, nextAttempt: due ? now - 1000 : now + 86_400_000,
          msg: {
            id, peerAddr: '127.0.0.1', peerHost: '', ident: '', helo: 'bench', mimeType: '7BIT',
            from: 'bench@example.org', to: ['user@localhost'], time: now, textFile: join(store.queueDir, 'spool', `${id}.eml`), size: body.length,
          },
        };
        store.messages.put(id, record);
        store.bodies.put(id, body);
        store.due.put([dueAt(record)!, id], null);
      }
    });
    rates.push(count / ((performance.now() - t0) / 1000));
  }
  const tenth = Math.max(1, Math.floor(rates.length / 10));
  const avg = (xs: number[]): number => Math.round(xs.reduce((a, b) => a + b, 0) / xs.length);
  return { firstRate: avg(rates.slice(0, tenth)), lastRate: avg(rates.slice(-tenth)) };
}
