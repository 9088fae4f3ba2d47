/**
 * Reading what a queue holds, for assertions: the record and the stored bytes,
 * whatever the storage — from a store this process owns, or (`daemon*`) from
 * the daemon that owns the queue, through its control socket (a queue a daemon
 * subprocess owns must not be opened here: see src/core/store.ts).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readHeaded, spliceInline } from '../../src/core/head.ts';
import type { QueueRecord, QueueStore } from '../../src/core/store.ts';
import { findDaemon } from '../../src/main/control-client.ts';

export interface Stored {
  record: QueueRecord;
  bytes: Buffer;
}

export async function storedMessage(store: QueueStore, id: string): Promise<Stored | undefined> {
  const record = store.get(id);
  if (!record) return undefined;
  // as readers see it: with the head authentication put on top (src/core/head.ts)
  const bytes = record.storage === 'inline' ? spliceInline(store.getInlineBody(id)!, record.head)
    : record.head ? await readHeaded(record.msg.textFile, record.head) : await readFile(record.msg.textFile);
  return { record, bytes: Buffer.from(bytes) };
}

/** Every queued message, in id order. */
export async function allStored(store: QueueStore): Promise<Stored[]> {
  const out: Stored[] = [];
  for (const id of store.ids()) {
    const s = await storedMessage(store, id);
    if (s) out.push(s);
  }
  return out;
}

/** The daemon that owns `queueDir` (fails when none answers on its control socket). */
async function daemonOf(queueDir: string): Promise<NonNullable<Awaited<ReturnType<typeof findDaemon>>>> {
  const d = await findDaemon(queueDir);
  if (!d) throw new Error(`no daemon answers on the control socket of ${queueDir}`);
  return d;
}

/**
 * Every queued message (or the ones asked for that are queued), in id order
 * (or the order asked for), as the daemon that owns the queue reads them from
 * its store: whole records, with the stored bytes.
 */
export async function daemonStored(queueDir: string, ids?: string[]): Promise<Stored[]> {
  const { client } = await daemonOf(queueDir);
  const out: Stored[] = [];
  for await (const item of client.items({ ids, bodies: true })) {
    if ('missing' in item) continue;
    out.push({ record: item.record, bytes: item.body ?? Buffer.alloc(0) });
  }
  return out;
}

/** Every queued record (or the ones asked for that are queued), by id, from the daemon that owns the queue. */
export async function daemonRecords(queueDir: string, ids?: string[]): Promise<Map<string, QueueRecord>> {
  const { client } = await daemonOf(queueDir);
  const out = new Map<string, QueueRecord>();
  for await (const item of client.items({ ids })) if (!('missing' in item)) out.set(item.record.msg.id, item.record);
  return out;
}

/** One record from the daemon that owns the queue (undefined: not queued). */
export async function daemonRecord(queueDir: string, id: string): Promise<QueueRecord | undefined> {
  return (await daemonRecords(queueDir, [id])).get(id);
}

/**
 * The stored bytes after the headers we prepend: our Authentication-Results
 * header when authentication is on (with its folded lines), the one `Received:`
 * header, then any `X-Envelope-To:` lines.
 */
export function afterTraceHeaders(bytes: Buffer): Buffer {
  const lineEnd = (from: number): number => {
    const eol = bytes.indexOf('\r\n', from);
    if (eol < 0) throw new Error('stored message ends inside the trace headers');
    return eol + 2;
  };
  let pos = 0;
  if (bytes.subarray(0, 23).equals(Buffer.from('Authentication-Results:'))) {
    pos = lineEnd(0);
    while (bytes[pos] === 0x20 || bytes[pos] === 0x09) pos = lineEnd(pos);
  }
  if (!bytes.subarray(pos, pos + 9).equals(Buffer.from('Received:'))) throw new Error('stored message does not start with Received:');
  pos = lineEnd(pos);
  while (bytes[pos] === 0x09) pos = lineEnd(pos); // folded lines of Received: start with a tab
  while (bytes.subarray(pos, pos + 14).toString('latin1') === 'X-Envelope-To:') pos = lineEnd(pos);
  return bytes.subarray(pos);
}

/** The trace header lines we prepend (Received: unfolded, then each X-Envelope-To:). */
export function traceHeaderText(bytes: Buffer): string {
  return bytes.subarray(0, bytes.length - afterTraceHeaders(bytes).length).toString('latin1');
}

/** Number of bare CRs (not followed by LF) and bare LFs (not preceded by CR). */
export function bareLineEnds(bytes: Buffer): number {
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x0a && bytes[i - 1] !== 0x0d) n++;
    if (bytes[i] === 0x0d && bytes[i + 1] !== 0x0a) n++;
  }
  return n;
}

/** Files in `<queue>/spool`. */
export async function spoolFiles(queueDir: string): Promise<string[]> {
  return readdir(join(queueDir, 'spool'));
}

/** Polls `check` until it holds (bounded: throws after `timeoutMs`). For waiting, not for timing assertions. */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
