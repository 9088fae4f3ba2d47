/**
 * One delivery attempt, in a worker: isDelivered per recipient before (so a
 * retry after a crash skips recipients already done), deliver, the `failed`
 * hook for recipients deliver failed for good, isDelivered after. Recipients
 * failed for good count as done. Returns the message's fields as deliver left them.
 */
import { existsSync } from 'node:fs';
import { StoredBody } from '../core/body.ts';
import { failedSet, failureReply } from '../core/failures.ts';
import { spliceInline } from '../core/head.ts';
import { overrides } from '../core/load.ts';
import { log } from '../core/log.ts';
import { Message } from '../core/message.ts';
import type { Receiver } from '../core/receiver.ts';
import type { QueueStore } from '../core/store.ts';
import type { DeliverItem, DeliverResult } from '../core/tasks.ts';
import type { MessageSnapshot } from '../core/types.ts';

/** Fields the framework sets on a message for one attempt only (not persisted). */
const TRANSIENT = ['undelivered', 'attempts'] as const;

/**
 * For an inline body, `message.textFile` is a getter that writes the body out
 * on first use (the seed's TEXTFILE is a path the user's code may open).
 */
function exposeTextFile(message: Message, body: StoredBody): void {
  Object.defineProperty(message, 'textFile', {
    enumerable: true,
    configurable: true,
    get: () => body.pathSync(),
    set(v: string) {
      Object.defineProperty(message, 'textFile', { value: v, enumerable: true, writable: true, configurable: true });
    },
  });
}

function snapshot(message: Message, textFile: string): MessageSnapshot {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(message)) {
    if (key === 'textFile' || (TRANSIENT as readonly string[]).includes(key)) continue;
    out[key] = (message as Record<string, unknown>)[key];
  }
  out.textFile = textFile;
  return out as MessageSnapshot;
}

function errorText(thrown: unknown): string {
  if (thrown instanceof Error) return thrown.message || thrown.name;
  return String(thrown);
}

export async function deliverOnce(receiver: Receiver, openStore: () => Promise<QueueStore>, task: DeliverItem): Promise<DeliverResult> {
  const textFile = task.message.textFile;
  let inline: Buffer | undefined;
  if (task.inline) {
    // handed over with the task (a copy of its own): no LMDB read
    inline = Buffer.from(task.inline.buffer, task.inline.byteOffset, task.inline.byteLength);
    if (task.head) inline = spliceInline(inline, task.head);
  } else if (task.storage === 'inline') {
    const store = await openStore();
    store.refresh(); // committed by the main thread after this worker's last read
    inline = store.getInlineBody(task.message.id);
    if (!inline) throw new Error(`message ${task.message.id}: inline body missing from the queue`);
    // lmdb may reuse the buffer it returned; our Authentication-Results header goes on top
    inline = task.head ? spliceInline(inline, task.head) : Buffer.from(inline);
    // let the snapshot go now: lmdb-js would on a timer, which does not run while Piscina
    // parks an idle worker in Atomics.wait, and a snapshot kept keeps LMDB from reusing
    // the pages freed after it (the map, and RSS, would grow with every delivery)
    store.refresh();
  }
  const message = new Message(task.message);
  const head = inline ? undefined : task.head;
  const body = new StoredBody(inline, message.size, textFile, head);
  // the path of an inline body is written on first use; a spooled one gets its head written in
  if (inline || head) exposeTextFile(message, body);
  const customCheck = overrides(receiver, 'isDelivered');
  const delivered = new Set(task.delivered);
  // recipients failed for good (by an earlier attempt) count as done
  const failedBefore = message.failed?.length ? failedSet(message) : undefined;
  let failed = failedBefore;

  const refresh = async (): Promise<string[]> => {
    const pending: string[] = [];
    for (const rcpt of message.to) {
      if (delivered.has(rcpt) || failed?.has(rcpt)) continue;
      if (customCheck && await receiver.isDelivered(message, rcpt)) delivered.add(rcpt);
      else pending.push(rcpt);
    }
    return pending;
  };

  let pending = await refresh();
  let error: string | undefined;
  let done: boolean;
  if (pending.length === 0 && message.to.length > 0) {
    done = true;
  } else {
    message.undelivered = pending;
    message.attempts = task.attempts;
    let threw = false;
    try {
      await receiver.deliver(message, body);
    } catch (thrown) {
      threw = true;
      error = errorText(thrown);
    }
    if (message.failed?.length) {
      failed = failedSet(message);
      await runFailedHooks(receiver, message, failedBefore);
    }
    pending = await refresh();
    // every recipient delivered or failed for good: finished, whatever else deliver said
    const settled = pending.length === 0 && message.to.length > 0;
    if (settled && (!threw || (failed?.size ?? 0) > 0)) done = true;
    else done = customCheck ? await receiver.isDelivered(message) : !threw;
  }
  const kept = done ? [...delivered] : [...delivered].filter((r) => message.to.includes(r));
  const textFileExists = task.storage === 'file' || existsSync(textFile);
  // a message that is done is removed: its fields need not come back
  const result: DeliverResult = { ok: true, done, message: done ? undefined : snapshot(message, textFile), delivered: kept, error, textFileExists };
  if (failed?.size) result.failed = [...failed];
  return result;
}

/** The receiver's `failed` hook, once for each recipient this attempt failed for good; a hook that throws is logged. */
async function runFailedHooks(receiver: Receiver, message: Message, before: Set<string> | undefined): Promise<void> {
  for (const f of message.failed ?? []) {
    if (before?.has(f.recipient)) continue;
    try {
      await receiver.failed(message, f.recipient, failureReply(f));
    } catch (thrown) {
      log.error('%s: the failed hook for %s threw: %s', message.id, f.recipient, thrown instanceof Error ? thrown.stack : String(thrown));
    }
  }
}
