/**
 * How a queue command reaches a queue: through the daemon that owns it (its
 * control socket), or — when no daemon runs — by taking the queue's lock and
 * opening the store itself for as long as the command runs. Never both, and
 * never the store of a queue another process owns.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { QueueLock, QueueLocked, type OwnerRole } from '../core/lock.ts';
import { QueueStore } from '../core/store.ts';
import { controlSocketPath } from './control-server.ts';
import { findDaemon, type ControlClient, type DaemonStatus } from './control-client.ts';

export type QueueAccess =
  | { via: 'daemon'; client: ControlClient; status: DaemonStatus }
  | { via: 'store'; store: QueueStore; lock: QueueLock };

export interface AccessOptions {
  /** How long to wait while another command holds the queue (or a daemon starts), ms. @default 10000 */
  waitMs?: number;
}

/** Runs `work` with access to the queue; a store opened here is closed and the lock released after. */
export async function withQueue<T>(queueDir: string, role: OwnerRole, work: (a: QueueAccess) => Promise<T>, o: AccessOptions = {}): Promise<T> {
  const waitMs = o.waitMs ?? 10_000;
  const deadline = Date.now() + waitMs;
  for (;;) {
    const daemon = await findDaemon(queueDir);
    if (daemon) return work({ via: 'daemon', ...daemon });
    let lock: QueueLock | undefined;
    try {
      // a serve that is starting (or stopping) gets the queue: we wait for its socket
      if (!QueueLock.serveWants(queueDir)) lock = QueueLock.tryAcquire(queueDir, role);
    } catch (err) {
      throw new Error(`cannot open the queue's lock file ${QueueLock.path(queueDir)} (${(err as Error).message}), and no daemon answers on ${controlSocketPath(queueDir)}`, { cause: err });
    }
    if (lock) {
      let store: QueueStore | undefined;
      try {
        store = await QueueStore.open(queueDir);
        // we own the queue: whoever leased messages is gone (a crashed daemon or runqueue)
        await store.recoverLeases();
        return await work({ via: 'store', store, lock });
      } finally {
        await store?.close();
        lock.release();
      }
    }
    // held by a queue command, or a daemon is starting or stopping: wait
    if (Date.now() >= deadline) {
      throw new QueueLocked(queueDir, QueueLock.owner(queueDir), `, and no daemon answers on ${controlSocketPath(queueDir)} (waited ${waitMs} ms)`);
    }
    await sleep(100);
  }
}
