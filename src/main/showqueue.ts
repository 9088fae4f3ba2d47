/**
 * `smtp-receive showqueue`: the queue as Postfix's `mailq` prints it, or as
 * `postqueue -j` JSON Lines. Streams: records are read one at a time and
 * written with back-pressure, so a million messages never sit in memory.
 */
import type { Writable } from 'node:stream';
import { isId } from '../core/id.ts';
import { overrides } from '../core/load.ts';
import { Message } from '../core/message.ts';
import type { Receiver } from '../core/receiver.ts';
import type { QueueRecord, QueueStore } from '../core/store.ts';
import { drained } from './drain.ts';
import { storeItems, type ListItem } from './listing.ts';
import { createFound, findReceiver } from './find-receiver.ts';
import { BUILTIN_FLAGS, BUILTIN_USAGE, builtinFlagValues, builtinFromFlags } from './builtin-flags.ts';
import type { RecordedReceiver } from '../core/receiver-record.ts';
import type { BuiltinReceiver } from '../receivers/index.ts';
import { footer, heading, jsonEntry, layoutFor, mailqEntry, type ListedMessage } from './mailq.ts';
import { CommandUsageError, queueDirFlag, parseCommandArgs } from './command.ts';
import { withQueue } from './queue-access.ts';

export const SHOWQUEUE_USAGE = `Usage: smtp-receive showqueue [--receiver FILE | built-in flags] [--queue DIR] [--json [--bodies]] [ids...]

List the queue like Postfix's mailq (or, with --json, like postqueue -j: one
JSON object per line). The receiver's isDelivered marks recipients that are done
(the built-in Maildir receiver: those whose copy is in their Maildir). While serve
runs, the listing comes through its control socket (QUEUE/control.sock).

Options:
  --receiver FILE          receiver module (default: the one serve recorded in the queue,
                           a module or a built-in receiver with its settings)
${BUILTIN_USAGE}  --queue DIR              queue directory (default ./queue)
  --json                   JSON Lines instead of text
  --bodies                 with --json: add body_b64, the stored message bytes
  -h, --help               show this help
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
        bodies: { type: 'boolean' }, ...BUILTIN_FLAGS, help: { type: 'boolean', short: 'h' },
      });
  const { values: v, positionals: ids } = parsed;
  if (v.help) {
    out.write(SHOWQUEUE_USAGE);
    return 0;
  }
  if (v.bodies && !v.json) throw new CommandUsageError('--bodies goes with --json');
  for (const id of ids) if (!isId(id)) throw new CommandUsageError(`${JSON.stringify(id)} is not a queue id`);
  const builtin = builtinFromFlags(builtinFlagValues(v), v.receiver);
  const queueDir = queueDirFlag(v.queue);
  out.on('error', () => out.destroy()); // EPIPE: the reader is gone; write() notices and stops
  const options = { json: v.json, bodies: v.bodies, ids: ids.length ? ids : undefined };
  let missing: string[];
  try {
    missing = await listQueue(queueDir, out, { ...options, receiverPath: v.receiver, builtin, say: (line) => err.write(`smtp-receive: ${line}\n`) });
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
  /** A built-in receiver instead (as runQueue's `builtin`). */
  builtin?: BuiltinReceiver;
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
    const recorded: RecordedReceiver = a.via === 'daemon'
      ? { module: a.status.receiver ?? undefined, builtin: a.status.builtin ?? undefined, hostname: a.status.hostname }
      : a.store.recordedSetup();
    // a listing sends nothing: a recorded webhook's secret is not needed
    const found = findReceiver({ module: o.receiverPath, builtin: o.builtin, secretsOptional: true }, recorded, o.say ?? (() => {}));
    let receiver: Receiver | undefined;
    if (found.path || found.builtin) {
      const r = await createFound(found, { domains: ['localhost'], queueDir, hostname: recorded.hostname ?? 'localhost' });
      if (overrides(r, 'isDelivered')) receiver = r;
    }
    const show = { ...o, receiver };
    const select = { ids: o.ids, bodies: o.json && o.bodies };
    return writeListing(a.via === 'daemon' ? a.client.items(select) : storeItems(a.store, select), out, show);
  });
}
