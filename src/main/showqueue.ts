/**
 * `smtp-receive showqueue`: the queue as Postfix's `mailq` prints it, or as
 * `postqueue -j` JSON Lines. Streams: records are read one at a time and
 * written with back-pressure, so a million messages never sit in memory.
 */
import { readFile } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { isId } from '../core/id.ts';
import { createReceiver, overrides } from '../core/load.ts';
import { Message } from '../core/message.ts';
import type { Receiver } from '../core/receiver.ts';
import { QueueStore, type QueueRecord } from '../core/store.ts';
import { findReceiver } from './find-receiver.ts';
import { footer, heading, jsonEntry, layoutFor, mailqEntry, type ListedMessage } from './mailq.ts';
import { CommandUsageError, queueDirFlag, parseCommandArgs } from './command.ts';

export const SHOWQUEUE_USAGE = `Usage: smtp-receive showqueue [--receiver FILE] [--queue DIR] [--json [--bodies]] [ids...]

List the queue like Postfix's mailq (or, with --json, like postqueue -j: one
JSON object per line). The receiver's isDelivered marks recipients that are done.

Options:
  --receiver FILE   receiver module (default: the one serve recorded in the queue)
  --queue DIR       queue directory (default ./queue)
  --json            JSON Lines instead of text
  --bodies          with --json: add body_b64, the stored message bytes
  -h, --help        show this help
`;

export interface ShowOptions {
  json?: boolean;
  bodies?: boolean;
  ids?: string[];
  /** Marks recipients done when its isDelivered(message, rcpt) says so. */
  receiver?: Receiver;
  now?: number;
}

/** The reader went away (`showqueue | head`): stop listing, quietly. */
class OutputClosed extends Error {}

async function write(out: Writable, text: string): Promise<void> {
  if (out.destroyed || out.writableEnded) throw new OutputClosed();
  if (!out.write(text)) {
    await new Promise<void>((resolve) => {
      out.once('drain', resolve);
      out.once('close', resolve);
    });
  }
}

async function listed(record: QueueRecord, receiver: Receiver | undefined, now: number): Promise<ListedMessage> {
  const done = new Set(record.delivered ?? []);
  if (receiver) {
    const message = new Message(record.msg);
    for (const rcpt of record.msg.to) {
      if (!done.has(rcpt) && await receiver.isDelivered(message, rcpt).catch(() => false)) done.add(rcpt);
    }
  }
  return { record, done, active: !!record.lease && record.lease.until > now };
}

async function storedBytes(store: QueueStore, r: QueueRecord): Promise<Buffer> {
  if (r.storage === 'inline') return Buffer.from(store.getInlineBody(r.msg.id) ?? Buffer.alloc(0));
  return readFile(r.msg.textFile);
}

/** Writes the listing; returns the ids asked for that are not in the queue. */
export async function showQueue(store: QueueStore, out: Writable, o: ShowOptions = {}): Promise<string[]> {
  const now = o.now ?? Date.now();
  const missing: string[] = [];
  const records = o.ids
    ? o.ids.flatMap((id) => {
      const r = store.get(id);
      if (!r) missing.push(id);
      return r ? [r] : [];
    })
    : (store.messages.getRange({ snapshot: true }).map(({ value }) => value) as Iterable<QueueRecord>);
  let count = 0;
  let bytes = 0;
  let layout: ReturnType<typeof layoutFor> | undefined;
  for (const record of records) {
    const m = await listed(record, o.receiver, now);
    if (o.json) {
      await write(out, jsonEntry(m, o.bodies ? await storedBytes(store, record) : undefined));
    } else {
      // Postfix picks one layout for the whole listing; our ids are all 17 characters
      layout ??= layoutFor(record.msg.id.length);
      await write(out, count === 0 ? heading(layout) : '\n');
      await write(out, mailqEntry(m, layout));
    }
    count++;
    bytes += record.msg.size;
  }
  if (!o.json) await write(out, footer(bytes, count));
  return missing;
}

export async function showqueueCommand(argv: string[], out = process.stdout, err = process.stderr): Promise<number> {
  const parsed = parseCommandArgs(argv, {
        receiver: { type: 'string' }, queue: { type: 'string' }, json: { type: 'boolean' },
        bodies: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      });
  const { values: v, positionals: ids } = parsed;
  if (v.help) {
    out.write(SHOWQUEUE_USAGE);
    return 0;
  }
  if (v.bodies && !v.json) throw new CommandUsageError('--bodies goes with --json');
  for (const id of ids) if (!isId(id)) throw new CommandUsageError(`${JSON.stringify(id)} is not a queue id`);
  const queueDir = queueDirFlag(v.queue);
  const store = await QueueStore.open(queueDir, { readOnly: true });
  try {
    const found = findReceiver(v.receiver, store, (line) => err.write(`smtp-receive: ${line}\n`));
    let receiver: Receiver | undefined;
    if (found.path) {
      const r = await createReceiver(found.path, { domains: ['localhost'], queueDir, hostname: 'localhost' });
      if (overrides(r, 'isDelivered')) receiver = r;
    }
    out.on('error', () => out.destroy()); // EPIPE: the reader is gone; write() notices and stops
    let missing: string[];
    try {
      missing = await showQueue(store, out, { json: v.json, bodies: v.bodies, ids: ids.length ? ids : undefined, receiver });
    } catch (err) {
      if (err instanceof OutputClosed) return 0;
      throw err;
    }
    for (const id of missing) err.write(`smtp-receive: ${id}: no such message in ${queueDir}\n`);
    return missing.length ? 1 : 0;
  } finally {
    await store.close();
  }
}
