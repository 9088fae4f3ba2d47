/**
 * `smtp-receive showqueue`: the queue as Postfix's `mailq` prints it, or as
 * `postqueue -j` JSON Lines. Streams: records are read one at a time and
 * written with back-pressure, so a million messages never sit in memory.
 */
import type { Writable } from 'node:stream';
import { isId } from '../core/id.ts';
import { createReceiver, overrides } from '../core/load.ts';
import { Message } from '../core/message.ts';
import type { Receiver } from '../core/receiver.ts';
import type { QueueRecord, QueueStore } from '../core/store.ts';
import { drained } from './drain.ts';
import { storeItems, type ListItem } from './listing.ts';
import { findReceiver } from './find-receiver.ts';
import { footer, heading, jsonEntry, layoutFor, mailqEntry, type ListedMessage } from './mailq.ts';
import { CommandUsageError, queueDirFlag, parseCommandArgs } from './command.ts';
import { withQueue } from './queue-access.ts';

export const SHOWQUEUE_USAGE = `Usage: smtp-receive showqueue [--receiver FILE] [--queue DIR] [--json [--bodies]] [ids...]

List the queue like Postfix's mailq (or, with --json, like postqueue -j: one
JSON object per line). The receiver's isDelivered marks recipients that are done.
While serve runs, the listing comes through its control socket (QUEUE/control.sock).

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
  if (!out.write(text)) await drained(out);
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

/**
 * Writes a listing of `items` (from the store, or from the daemon's control
 * socket); returns the ids asked for that are not in the queue.
 */
export async function writeListing(items: AsyncIterable<ListItem>, out: Writable, o: ShowOptions = {}): Promise<string[]> {
  const now = o.now ?? Date.now();
  const missing: string[] = [];
  let count = 0;
  let bytes = 0;
  let layout: ReturnType<typeof layoutFor> | undefined;
  for await (const item of items) {
    if ('missing' in item) {
      missing.push(item.missing);
      continue;
    }
    const { record } = item;
    const m = await listed(record, o.receiver, now);
    if (o.json) {
      await write(out, jsonEntry(m, o.bodies ? item.body ?? Buffer.alloc(0) : undefined));
    } else {
      // Postfix picks one layout for the whole listing; our ids are all 17 characters
      layout ??= layoutFor(record.msg.id.length);
      await write(out, count === 0 ? heading(layout) : '\n');
      await write(out, mailqEntry(m, layout));
    }
    count++;
    bytes += record.msg.size;
  }
  // "Mail queue is empty" would be wrong when the ids asked for are simply not there
  if (!o.json && !(o.ids && count === 0)) await write(out, footer(bytes, count));
  return missing;
}

/** Writes the listing of a store this process owns; returns the ids asked for that are not in the queue. */
export function showQueue(store: QueueStore, out: Writable, o: ShowOptions = {}): Promise<string[]> {
  return writeListing(storeItems(store, { ids: o.ids, bodies: o.json && o.bodies }), out, o);
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
  out.on('error', () => out.destroy()); // EPIPE: the reader is gone; write() notices and stops
  const options = { json: v.json, bodies: v.bodies, ids: ids.length ? ids : undefined };
  let missing: string[];
  try {
    missing = await listQueue(queueDir, out, { ...options, receiverPath: v.receiver, say: (line) => err.write(`smtp-receive: ${line}\n`) });
  } catch (e) {
    if (e instanceof OutputClosed) return 0;
    throw e;
  }
  for (const id of missing) err.write(`smtp-receive: ${id}: no such message in ${queueDir}\n`);
  return missing.length ? 1 : 0;
}

export interface ListQueueOptions extends Omit<ShowOptions, 'receiver'> {
  /** Receiver whose isDelivered marks recipients done; default: the one serve recorded (or runs). */
  receiverPath?: string;
  /** Where to say which receiver is used when it was not given. */
  say?: (line: string) => void;
}

/**
 * Lists a queue by its directory: through the daemon's control socket when
 * one owns the queue, else from the store (holding the queue's lock meanwhile).
 * Same output either way; returns the ids asked for that are not queued.
 */
export function listQueue(queueDir: string, out: Writable, o: ListQueueOptions = {}): Promise<string[]> {
  return withQueue(queueDir, 'showqueue', async (a) => {
    const recorded = a.via === 'daemon' ? a.status.receiver ?? undefined : a.store.recordedReceiver();
    const found = findReceiver(o.receiverPath, recorded, o.say ?? (() => {}));
    let receiver: Receiver | undefined;
    if (found.path) {
      const r = await createReceiver(found.path, { domains: ['localhost'], queueDir, hostname: 'localhost' });
      if (overrides(r, 'isDelivered')) receiver = r;
    }
    const show = { ...o, receiver };
    const select = { ids: o.ids, bodies: o.json && o.bodies };
    return writeListing(a.via === 'daemon' ? a.client.items(select) : storeItems(a.store, select), out, show);
  });
}
