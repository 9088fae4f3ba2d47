/**
 * Queue operations an operator expects, named after postsuper/postqueue:
 * flush (postqueue -f), delete (postsuper -d), hold (-h), release (-H),
 * requeue (-r). Each is an atomic LMDB change, safe while a daemon runs:
 * messages leased by a runner (being delivered) are left alone and reported.
 */
import { unlink } from 'node:fs/promises';
import type { QueueRecord, QueueStore } from './store.ts';

export interface OpResult {
  /** Ids changed. */
  changed: string[];
  /** Ids not in the queue. */
  missing: string[];
  /** Ids being delivered right now (leased): not changed, try again. */
  busy: string[];
  /** Ids already in the wanted state. */
  unchanged: string[];
}

type Change = (r: QueueRecord, now: number) => QueueRecord | null | 'unchanged';

const BATCH = 1000;

async function apply(store: QueueStore, ids: string[] | 'ALL', change: Change, now: number): Promise<OpResult> {
  const result: OpResult = { changed: [], missing: [], busy: [], unchanged: [] };
  const removedFiles: string[] = [];
  // attempts' outcomes waiting for a commit to join (QueueStore.updateLater) are written first: a message
  // just delivered is gone (missing), not busy, and one just deferred is changed in its new state
  await store.flushLater();
  store.refresh();
  const all = ids === 'ALL' ? [...store.ids()] : [...new Set(ids)];
  for (let i = 0; i < all.length; i += BATCH) {
    const slice = all.slice(i, i + BATCH);
    await store.batch(() => {
      for (const id of slice) {
        let outcome: 'missing' | 'busy' | 'unchanged' | 'changed' = 'missing';
        store.updateSync(id, (r) => {
          if (r.lease && r.lease.until > now) {
            outcome = 'busy';
            return undefined;
          }
          const next = change(r, now);
          if (next === 'unchanged') {
            outcome = 'unchanged';
            return undefined;
          }
          outcome = 'changed';
          if (next === null) removedFiles.push(r.msg.textFile);
          return next;
        });
        // ALL means what is queued when each batch runs: one delivered and gone meanwhile was not asked for
        if (outcome !== 'missing' || ids !== 'ALL') result[outcome].push(id);
      }
    });
  }
  // files go after the records are durably gone: a crash in between leaves only orphans, removed at start-up
  await Promise.all(removedFiles.map((f) => unlink(f).catch(() => {})));
  return result;
}

const unleased = (r: QueueRecord): QueueRecord => {
  const { lease: _lease, ...rest } = r;
  return rest;
};

/** Makes every queued (not held) message due now. */
export function flush(store: QueueStore, now = Date.now()): Promise<OpResult> {
  return apply(store, 'ALL', (r) => (r.state === 'queued' && r.nextAttempt > now ? { ...unleased(r), nextAttempt: now } : 'unchanged'), now);
}

/** Removes messages, record and body (postsuper -d). */
export function deleteMessages(store: QueueStore, ids: string[] | 'ALL', now = Date.now()): Promise<OpResult> {
  return apply(store, ids, () => null, now);
}

/** Puts messages on hold: never attempted until released (postsuper -h). */
export function hold(store: QueueStore, ids: string[] | 'ALL', now = Date.now()): Promise<OpResult> {
  return apply(store, ids, (r) => (r.state === 'hold' ? 'unchanged' : { ...unleased(r), state: 'hold' }), now);
}

/** Releases held messages; they are due at once (postsuper -H). */
export function release(store: QueueStore, ids: string[] | 'ALL', now = Date.now()): Promise<OpResult> {
  return apply(store, ids, (r) => (r.state === 'hold' ? { ...unleased(r), state: 'queued', nextAttempt: now } : 'unchanged'), now);
}

/**
 * Requeues messages (postsuper -r): due now, attempt count and error reset, a
 * fresh queue lifetime from now; held messages are released too.
 */
export function requeue(store: QueueStore, ids: string[] | 'ALL', now = Date.now()): Promise<OpResult> {
  return apply(store, ids, (r) => {
    const { error: _error, ...msg } = r.msg;
    return { ...unleased(r), state: 'queued', attempts: 0, nextAttempt: now, lifetimeFrom: now, msg };
  }, now);
}
