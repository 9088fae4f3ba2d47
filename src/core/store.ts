/**
 * The queue store: the one module that reads and writes queue state in LMDB.
 *
 * Layout of the environment `<queue>/db` (versioned: `meta.schema`):
 *   messages  id → QueueRecord (msgpack)
 *   bodies    id → stored bytes of an inline body (binary)
 *   due       [nextAttempt, id] → null: the index the queue runner scans
 *
 * LMDB is multi-process: the daemon, `runqueue`, `showqueue` and cron jobs may
 * open the same environment at once.
 */
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import type { MessageSnapshot } from './types.ts';

export const SCHEMA_VERSION = 1;

export type QueueState = 'queued' | 'hold';

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
}

export interface StoreOptions {
  readOnly?: boolean;
}

type CommitPromise = Promise<boolean> & { flushed?: Promise<unknown> };

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
    const committed = this.messages.put(id, record) as CommitPromise;
    if (inlineBody) this.bodies.put(id, inlineBody);
    this.due.put([record.nextAttempt, id], null);
    if (!(await committed)) throw new Error(`queue: message ${id} was not written`);
    await (committed.flushed ?? this.root.flushed);
  }

  get(id: string): QueueRecord | undefined {
    return this.messages.get(id);
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

  /** Removes a message's record, inline body and index entry (durably). */
  async remove(id: string): Promise<boolean> {
    const record = this.messages.get(id);
    if (!record) return false;
    const done = this.messages.remove(id) as CommitPromise;
    this.bodies.remove(id);
    this.due.remove([record.nextAttempt, id]);
    await done;
    await (done.flushed ?? this.root.flushed);
    return true;
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
