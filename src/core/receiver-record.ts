/**
 * The receiver `serve` records in its queue, read back by the queue commands
 * that run one with no daemon (runqueue, showqueue). Two root keys of the
 * queue's LMDB environment:
 *   receiver        the module's absolute path, or null: all that versions
 *                   before the record wrote, and all they read (so they still can)
 *   receiverRecord  { v: 1, receiver, builtin, hostname }: the same path, the
 *                   built-in receiver's record (no secrets: src/receivers/recorded.ts)
 *                   and serve's hostname
 */
import type { RootDatabase } from 'lmdb';
import { asRecordedBuiltin, type RecordedBuiltin } from '../receivers/recorded.ts';

const RECORD = 'receiverRecord';

interface ReceiverRecord {
  v: 1;
  receiver: string | null;
  builtin: RecordedBuiltin | null;
  hostname: string | null;
}

/** The receiver serve recorded (nothing for a queue serve never ran on). */
export interface RecordedReceiver {
  /** The receiver module's absolute path. */
  module?: string;
  /** The built-in receiver serve ran, without its secrets (none from a serve before the record). */
  builtin?: RecordedBuiltin;
  /** serve's hostname: a Maildir copy's file name holds it, a relay greets with it. */
  hostname?: string;
}

export async function writeReceiverRecord(root: RootDatabase, path: string | undefined, o: { builtin?: RecordedBuiltin; hostname?: string }): Promise<void> {
  const record: ReceiverRecord = { v: 1, receiver: path ?? null, builtin: path ? null : o.builtin ?? null, hostname: o.hostname ?? null };
  await Promise.all([root.put('receiver', path ?? null), root.put(RECORD, record)]);
}

/**
 * A queue an older serve wrote has the path alone (or null). So, in effect,
 * has one where an older serve ran after a newer one: its path differs from
 * the record's, which is then ignored. (Both null, an older serve's built-in
 * cannot be told from the newer one's: a downgrade then an upgrade between
 * two serves of one queue is the one case where the record can be stale.)
 */
export function readReceiverRecord(root: RootDatabase): RecordedReceiver {
  const module = (root.get('receiver') as string | null | undefined) ?? undefined;
  const r = root.get(RECORD) as Partial<ReceiverRecord> | undefined;
  if (r?.v !== 1 || (r.receiver ?? undefined) !== module) return { module };
  return {
    module,
    builtin: module ? undefined : asRecordedBuiltin(r.builtin),
    hostname: typeof r.hostname === 'string' ? r.hostname : undefined,
  };
}
