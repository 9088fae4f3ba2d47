/**
 * The queue store: the one module that reads and writes queue state in LMDB.
 *
 * Layout of the environment `<queue>/db` (versioned: `meta.schema`):
 *   messages  id → QueueRecord (msgpack)
 *   bodies    id → stored bytes of an inline body (binary)
 *   due       [nextAttempt, id] → null: the index the queue runner scans
 *   leases    id → lease expiry: the messages being delivered (schema 2)
 *   (root)    schema; the receiver serve runs (./receiver-record.ts)
 *
 * One owner: exactly one process opens a queue's environment — the one that
 * holds the queue's lock (src/core/lock.ts): `serve`, or a queue command when
 * no daemon runs. `open` refuses otherwise. Its worker threads share the
 * environment (lmdb-js reuses it within a process). Why: lmdb-js 3.5.6's
 * bundled LMDB lets any process that *opens* the environment — read-only
 * included — roll the shared transaction counter back while the owner commits
 * (mdb_env_open2 writes `mti_txnid` unconditionally; upstream LMDB fixed it in
 * ITS#9496), which overwrites an acknowledged commit and corrupts the free list.
 * bench/lmdb-open-race/ reproduces it. Other processes use the owner's control
 * socket (src/main/control-server.ts).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { events } from './events.ts';
import type { StoredHead } from './auth.ts';
import { QueueLock, type OwnerRole } from './lock.ts';
import type { MessageSnapshot } from './types.ts';
import type { RecordedBuiltin } from '../receivers/recorded.ts';
import { readReceiverRecord, writeReceiverRecord, type RecordedReceiver } from './receiver-record.ts';

/** 2 adds the `leases` index; a version 1 queue is migrated when its owner opens it. */
export const SCHEMA_VERSION = 2;

/** Opening a queue without holding its lock (src/core/lock.ts). */
export class QueueNotOwned extends Error {
  constructor(queueDir: string) {
    super(`queue ${queueDir}: this process does not hold the queue's lock; only its owner may open the queue store`);
    this.name = 'QueueNotOwned';
  }
}

export type QueueState = 'queued' | 'hold';

/** A delivery claim: who is delivering the message, until when (then it expires). */
export interface Lease {
  owner: string;
  until: number;
}

/** One queued message. Version 1 of the record schema. */
export interface QueueRecord {
  v: 1;
  /** The message fields (the seed's plus whatever `deliver` added). */
  msg: MessageSnapshot;
  state: QueueState;
  /** Where the body is: inside LMDB (`bodies`) or in the spool file `msg.textFile`. */
  storage: 'inline' | 'file';
  attempts: number;
  /** When the next delivery attempt is due, ms since the epoch. */
  nextAttempt: number;
  /** Recipients known to be delivered (by an earlier attempt's isDelivered). */
  delivered?: string[];
  /** Set while a runner delivers the message. */
  lease?: Lease;
  /** The queue lifetime counts from here (requeue resets it); default: `msg.time`. */
  lifetimeFrom?: number;
  /** What authentication put in place of the first stored bytes (our Authentication-Results header). */
  head?: StoredHead;
}

/**
 * The due-index key of a record: when a runner should look at it next.
 * A leased message is due when its lease expires; a held one is not in the index.
 */
export function dueAt(r: QueueRecord): number | undefined {
  if (r.state === 'hold') return undefined;
  return r.lease ? Math.max(r.lease.until, r.nextAttempt) : r.nextAttempt;
}

export interface StoreOptions {
  readOnly?: boolean;
  /** How long a change made with `updateLater` may wait for a commit to join, ms. @default 20 */
  laterMs?: number;
}

type Change = (r: QueueRecord) => QueueRecord | null | undefined;

interface LaterChange {
  id: string;
  change: Change;
  resolve: (r: QueueRecord | null | undefined) => void;
  reject: (err: unknown) => void;
}

type CommitPromise = Promise<boolean> & { flushed?: Promise<unknown> };

/**
 * Waits for write promises of one transaction. On a failed commit (disk full,
 * I/O error) every promise is handled — lmdb-js rejects each of them and a
 * second `commitError` promise with the cause, and an unhandled one would end
 * the process — and the cause is thrown.
 */
async function settle(writes: Promise<boolean>[]): Promise<void> {
  const results = await Promise.allSettled(writes);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    const err = failed.reason as Error & { commitError?: Promise<unknown> };
    const cause = err.commitError ? await err.commitError.then(() => err, (e: unknown) => e) : err;
    throw cause;
  }
  if (results.some((r) => r.status === 'fulfilled' && r.value === false)) throw new Error('queue: a write was not applied');
}

export class QueueStore {
  readonly root: RootDatabase;
  readonly messages: Database<QueueRecord, string>;
  readonly bodies: Database<Buffer, string>;
  readonly due: Database<null, [number, string]>;
  readonly leases: Database<number, string>;
  /** The queue's lock, when this store took it itself (openOwned): close() gives the queue up. */
  private ownLock: QueueLock | undefined;
  /** Changes that wait for the next commit (updateLater). */
  private later: LaterChange[] = [];
  private laterTimer: NodeJS.Timeout | undefined;
  private readonly laterMs: number;

  private constructor(readonly queueDir: string, options: StoreOptions) {
    this.root = open({
      path: join(queueDir, 'db'),
      maxDbs: 8,
      separateFlushed: true,
      // lmdb-js's overlappingSync (its default) lost committed transactions when other processes
      // opened and closed the environment, by a path other than the open race (still lost with
      // that fixed); off, every commit syncs before the next write transaction
      overlappingSync: false,
      readOnly: options.readOnly ?? false,
    });
    this.laterMs = options.laterMs ?? 20;
    this.messages = this.root.openDB<QueueRecord, string>({ name: 'messages' });
    this.bodies = this.root.openDB<Buffer, string>({ name: 'bodies', encoding: 'binary' });
    this.due = this.root.openDB<null, [number, string]>({ name: 'due' });
    this.leases = this.root.openDB<number, string>({ name: 'leases' });
  }

  /**
   * Opens (creating when needed) the store of a queue directory, which this
   * process must own (hold its lock), and checks its schema version.
   */
  static async open(queueDir: string, options: StoreOptions = {}): Promise<QueueStore> {
    if (!QueueLock.held(queueDir)) throw new QueueNotOwned(queueDir);
    let store: QueueStore;
    try {
      store = new QueueStore(queueDir, options);
    } catch (err) {
      // lmdb-js's own text names neither the file nor the queue ("Attempting to setup locks")
      throw new Error(`queue ${queueDir}: cannot open ${join(queueDir, 'db')}: ${(err as Error).message}`, { cause: err });
    }
    const schema = store.root.get('schema') as number | undefined;
    if (schema === undefined && !options.readOnly) {
      await store.root.put('schema', SCHEMA_VERSION);
    } else if (schema === 1 && !options.readOnly) {
      await store.migrateFrom1();
    } else if (schema !== undefined && schema !== SCHEMA_VERSION && !(schema === 1 && options.readOnly)) {
      await store.close();
      throw new Error(`queue ${queueDir}: schema version ${schema} is not supported (this version reads 1 and ${SCHEMA_VERSION})`);
    }
    return store;
  }

  /**
   * For scripts and tools, where no daemon runs on the queue: takes the
   * queue's lock (waiting up to `waitMs` for a queue command or a stopping
   * daemon), then opens the store; close() gives the queue up again.
   */
  static async openOwned(queueDir: string, o: { waitMs?: number; role?: OwnerRole } = {}): Promise<QueueStore> {
    await mkdir(queueDir, { recursive: true });
    const lock = await QueueLock.acquire(queueDir, o.role ?? 'tool', { waitMs: o.waitMs ?? 10_000 });
    try {
      const store = await QueueStore.open(queueDir);
      store.ownLock = lock;
      return store;
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  /** Version 1 → 2: index the leases held in records. */
  private async migrateFrom1(): Promise<void> {
    await this.batch(() => {
      for (const { key, value } of this.messages.getRange()) if (value.lease) this.leases.put(key, value.lease.until);
      this.root.put('schema', SCHEMA_VERSION);
    });
  }

  /**
   * Takes back every lease in the queue: called by a new owner, whose lock
   * proves that whoever wrote them is gone (a crashed daemon, a killed
   * runqueue). Those messages are due at once. Returns their ids.
   */
  async recoverLeases(now = Date.now()): Promise<string[]> {
    const ids = [...this.leases.getKeys()] as string[];
    if (ids.length === 0) return ids;
    await this.batch(() => {
      for (const id of ids) {
        this.leases.remove(id);
        this.updateSync(id, (r) => {
          if (!r.lease) return undefined;
          const { lease: _lease, ...rest } = r;
          return { ...rest, nextAttempt: Math.min(rest.nextAttempt, now) };
        });
      }
    });
    return ids;
  }

  /**
   * Adds a message: record, inline body and due-index entry in one transaction,
   * resolved only once that transaction is committed *and flushed* to disk.
   * Concurrent calls share commits (lmdb-js batches the writes of one event turn).
   */
  async enqueue(record: QueueRecord, inlineBody?: Buffer): Promise<void> {
    void this.flushLater(); // they join this commit
    const id = record.msg.id;
    const writes = [this.messages.put(id, record) as CommitPromise];
    if (inlineBody) writes.push(this.bodies.put(id, inlineBody) as CommitPromise);
    const due = dueAt(record);
    if (due !== undefined) writes.push(this.due.put([due, id], null) as CommitPromise);
    if (record.lease) writes.push(this.leases.put(id, record.lease.until) as CommitPromise);
    const started = events.commit.hasSubscribers ? performance.now() : 0;
    await settle(writes);
    await (writes[0]!.flushed ?? this.root.flushed);
    if (started) events.commit.publish({ ms: performance.now() - started });
  }

  /**
   * Remembers which receiver `serve` runs, for `runqueue`/`showqueue` to find
   * when no daemon runs: the module's path, or the built-in receiver's record
   * (its settings without secrets), and serve's hostname (./receiver-record.ts).
   */
  async recordReceiver(path: string | undefined, o: { builtin?: RecordedBuiltin; hostname?: string } = {}): Promise<void> {
    await writeReceiverRecord(this.root, path, o);
  }

  /** The receiver module serve recorded, if it ran one. */
  recordedReceiver(): string | undefined {
    return this.recordedSetup().module;
  }

  /** What serve recorded about its receiver (see recordReceiver). */
  recordedSetup(): RecordedReceiver {
    return readReceiverRecord(this.root);
  }

  get(id: string): QueueRecord | undefined {
    return this.messages.get(id);
  }

  /**
   * Moves reads to the latest committed state. lmdb-js renews its read snapshot
   * after its own writes; changes made by another thread or process (a worker
   * reading what the main thread committed, a daemon seeing `flush` from the
   * CLI) need this first.
   */
  refresh(): void {
    this.root.resetReadTxn();
  }

  /** The inline body of a message, or undefined when it is spooled (or gone). */
  getInlineBody(id: string): Buffer | undefined {
    return this.bodies.getBinary(id) ?? undefined;
  }

  has(id: string): boolean {
    return this.messages.doesExist(id);
  }

  /** All queued ids, in id (= arrival) order, without loading records. */
  ids(): Iterable<string> {
    return this.messages.getKeys() as Iterable<string>;
  }

  /** Number of queued messages, from LMDB's own statistics (getCount() walks every key). */
  count(): number {
    return (this.messages.getStats() as { entryCount: number }).entryCount;
  }

  /**
   * Runs `change` on a record atomically (an LMDB write transaction: exclusive
   * across threads and processes) and keeps the due index in step. `change`
   * returns the new record, `null` to delete the message, or `undefined` to
   * leave it. Resolves once the change is flushed, with what `change` returned.
   */
  async update(id: string, change: Change): Promise<QueueRecord | null | undefined> {
    const result = await this.root.transaction(() => this.updateSync(id, change));
    await this.root.flushed;
    return result;
  }

  /** Inside a transaction: the same as `update` without waiting. */
  updateSync(id: string, change: Change): QueueRecord | null | undefined {
    const before = this.messages.get(id);
    if (!before) return undefined;
    const after = change(before);
    if (after === undefined) return undefined;
    const oldDue = dueAt(before);
    if (oldDue !== undefined) this.due.remove([oldDue, id]);
    if (before.lease && !after?.lease) this.leases.remove(id);
    if (after === null) {
      this.messages.remove(id);
      this.bodies.remove(id);
      return null;
    }
    this.messages.put(id, after);
    if (after.lease && after.lease.until !== before.lease?.until) this.leases.put(id, after.lease.until);
    const newDue = dueAt(after);
    if (newDue !== undefined) this.due.put([newDue, id], null);
    return after;
  }

  /**
   * Like `update`, for a change that need not be durable at once (a delivered
   * message's removal: lost in a crash, the message is delivered again). It
   * joins the next enqueue's commit, or commits within `laterMs`, or at
   * `flushLater()`; the changes waiting share one transaction. Resolves once
   * flushed, like `update`.
   */
  updateLater(id: string, change: Change): Promise<QueueRecord | null | undefined> {
    return new Promise((resolve, reject) => {
      this.later.push({ id, change, resolve, reject });
      this.laterTimer ??= setTimeout(() => this.flushLater(), this.laterMs);
    });
  }

  /** Commits the changes `updateLater` holds now (in the current event turn's commit). */
  flushLater(): Promise<void> {
    clearTimeout(this.laterTimer);
    this.laterTimer = undefined;
    if (this.later.length === 0) return Promise.resolve();
    const changes = this.later;
    this.later = [];
    return this.batch(() => changes.map((c) => this.updateSync(c.id, c.change))).then(
      (results) => { for (const [i, c] of changes.entries()) c.resolve(results[i]); },
      (err: unknown) => { for (const c of changes) c.reject(err); },
    );
  }

  /** Runs several record changes in one transaction (one commit, one flush). */
  async batch<T>(work: () => T): Promise<T> {
    const result = await this.root.transaction(work);
    await this.root.flushed;
    return result;
  }

  /** Ids due at or before `now`, earliest first; reads only the index. */
  dueIds(now: number, limit: number): string[] {
    const out: string[] = [];
    for (const [, id] of this.due.getKeys({ end: [now, '\uffff'], limit })) out.push(id);
    return out;
  }

  /** When the earliest indexed message is due (undefined: nothing is). */
  nextDue(): number | undefined {
    for (const [at] of this.due.getKeys({ limit: 1 })) return at;
    return undefined;
  }

  /** Removes a message's record, inline body and index entry (durably). */
  async remove(id: string): Promise<boolean> {
    return (await this.update(id, () => null)) === null;
  }

  /** Is the environment open (not closing or closed)? */
  get isOpen(): boolean {
    return (this.root as unknown as { isOperational(): boolean }).isOperational();
  }

  async close(): Promise<void> {
    await this.flushLater();
    await this.root.close();
    this.ownLock?.release();
  }
}
