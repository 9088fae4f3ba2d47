/**
 * Opening a queue from a test, as its owner (QueueStore.openOwned: the
 * queue's lock, then the store). Only when no daemon owns the queue — a test
 * that lists or changes a queue a daemon owns goes through the daemon (the
 * CLI, the exported functions, or helpers/queue.ts's daemon readers).
 */
import { QueueLock } from '../../src/core/lock.ts';
import { QueueStore } from '../../src/core/store.ts';

export interface OwnedQueue {
  store: QueueStore;
  lock: QueueLock;
  /** Closes the store and gives the queue up. */
  close(): Promise<void>;
}

export async function ownQueue(queueDir: string, o: { waitMs?: number } = {}): Promise<OwnedQueue> {
  const store = await QueueStore.openOwned(queueDir, o);
  return { store, lock: QueueLock.held(queueDir)!, close: () => store.close() };
}
