/**
 * The queue store: the one module that reads and writes queue state in LMDB.
 *
 * Layout of the environment `<queue>/db` (versioned: `meta.schema`):
 *   messages  id → QueueRecord (msgpack)
 *   bodies    id → stored bytes of an inline body (binary)
 *   due       [nextAttempt, id] → null: the index the queue runner scans
 *
 * LMDB is multi-process: the daemon, `runqueue`, `showqueue` and cron jobs may
 * open the same environment at once. Open finding (README, "Soak"): with other
 * processes opening it while the daemon writes, a rare loss remains even with
 * overlappingSync off; test/multiprocess.test.ts does not reproduce it yet.
 */
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import type { MessageSnapshot } from './types.ts';

export const SCHEMA_VERSION = 1;

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

  private constructor(readonly queueDir: string, options: StoreOptions) {
    this.root = open({
      path: join(queueDir, 'db'),
      maxDbs: 8,
      separateFlushed: true,
      // lmdb-js's overlappingSync (its default) loses committed transactions when other processes
      // open and close the environment meanwhile (test/multiprocess.test.ts: whole batches of
      // enqueued messages vanished); off, every commit syncs before the next write transaction
      overlappingSync: false,
      readOnly: options.readOnly ?? false,
    });
    this.messages = this.root.openDB<QueueRecord, string>({ name: 'messages' });
    this.bodies = this.root.openDB<Buffer, string>({ name: 'bodies', encoding: 'binary' });
    this.due = this.root.openDB<null, [number, string]>({ name: 'due' });
  }

  /** Opens (creating when needed) the store of a queue directory and checks its schema version. */
  static async open(queueDir: string, options: StoreOptions = {}): Promise<QueueStore> {
    const store = new QueueStore(queueDir, options);
    const schema = store.root.get('schema') as number | undefined;
    if (schema === undefined && !options.readOnly) {
      await store.root.put('schema', SCHEMA_VERSION);
    } else if (schema !== undefined && schema !== SCHEMA_VERSION) {
      await store.close();
      throw new Error(`queue ${queueDir}: schema version ${schema} is not supported (this version reads ${SCHEMA_VERSION})`);
    }
    return store;
  }

  /**
   * Adds a message: record, inline body and due-index entry in one transaction,
   * resolved only once that transaction is committed *and flushed* to disk.
   * Concurrent calls share commits (lmdb-js batches the writes of one event turn).
   */
  async enqueue(record: QueueRecord, inlineBody?: Buffer): Promise<void> {
    const id = record.msg.id;
    const writes = [this.messages.put(id, record) as CommitPromise];
    if (inlineBody) writes.push(this.bodies.put(id, inlineBody) as CommitPromise);
    const due = dueAt(record);
    if (due !== undefined) writes.push(this.due.put([due, id], null) as CommitPromise);
    await settle(writes);
    await (writes[0]!.flushed ?? this.root.flushed);
  }

  /** Remembers which receiver module `serve` runs, for `runqueue`/`showqueue` to find. */
  async recordReceiver(path: string | undefined): Promise<void> {
    await this.root.put('receiver', path ?? null);
  }

  recordedReceiver(): string | undefined {
    return (this.root.get('receiver') as string | null | undefined) ?? undefined;
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

  /** Number of queued messages. */
  count(): number {
    return this.messages.getCount();
  }

  /**
   * Runs `change` on a record atomically (an LMDB write transaction: exclusive
   * across threads and processes) and keeps the due index in step. `change`
   * returns the new record, `null` to delete the message, or `undefined` to
   * leave it. Resolves once the change is flushed, with what `change` returned.
   */
  async update(id: string, change: (r: QueueRecord) => QueueRecord | null | undefined): Promise<QueueRecord | null | undefined> {
    const result = await this.root.transaction(() => this.updateSync(id, change));
    await this.root.flushed;
    return result;
  }

  /** Inside a transaction: the same as `update` without waiting. */
  updateSync(id: string, change: (r: QueueRecord) => QueueRecord | null | undefined): QueueRecord | null | undefined {
    const before = this.messages.get(id);
    if (!before) return undefined;
    const after = change(before);
    if (after === undefined) return undefined;
    const oldDue = dueAt(before);
    if (oldDue !== undefined) this.due.remove([oldDue, id]);
    if (after === null) {
      this.messages.remove(id);
      this.bodies.remove(id);
      return null;
    }
    this.messages.put(id, after);
    const newDue = dueAt(after);
    if (newDue !== undefined) this.due.put([newDue, id], null);
    return after;
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

  async close(): Promise<void> {
    await this.root.close();
  }
}
