/**
 * Queue listings in the formats operators' scripts already parse: Postfix's
 * `mailq` text (short- and long-id layouts) and `postqueue -j` JSON Lines.
 * Pure functions of a record: the command streams them.
 */
import { failureReason } from '../core/failures.ts';
import type { QueueRecord } from '../core/store.ts';

/** What a listing needs to know about one message besides its record. */
export interface ListedMessage {
  record: QueueRecord;
  /** Recipients that are done (recorded by the runner, or isDelivered says so). */
  done: ReadonlySet<string>;
  /** The message is being delivered (an unexpired lease). */
  active: boolean;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad2 = (n: number): string => String(n).padStart(2, '0');

/** C's asctime(localtime(t)) without the newline: `Thu Nov 26 12:22:30 2026`. */
export function asctime(ms: number): string {
  const d = new Date(ms);
  return `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} `
    + `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())} ${d.getFullYear()}`;
}

const left = (s: string, w: number): string => s.padEnd(w, ' ');
const right = (s: string, w: number): string => s.padStart(w, ' ');
/** printf's %W.Ws: cut to W, then pad right-aligned to W. */
const cut = (s: string, w: number): string => right(s.slice(0, w), w);

export interface Layout {
  long: boolean;
}

/** Postfix's layout choice: the long-id layout when any id is longer than 10 characters. */
export function layoutFor(idLength: number): Layout {
  return { long: idLength > 10 };
}

export function heading(l: Layout): string {
  return l.long
    ? `${left('----Queue ID-----', 17)} ${right('--Size--', 8)} ${left('---Arrival Time----', 19)} --Sender/Recipient------\n`
    : `${left('-Queue ID-', 11)} ${right('--Size--', 7)} ${left('----Arrival Time----', 20)} -Sender/Recipient-------\n`;
}

/** One message in mailq layout (without the blank line that separates messages). */
export function mailqEntry(m: ListedMessage, l: Layout): string {
  const r = m.record;
  // Postfix's "%s%c": the status character is always there (a space when neither), so with
  // our 17-character ids every row of the long layout has the same columns
  const status = r.msg.id + (r.state === 'hold' ? '!' : m.active ? '*' : ' ');
  const sender = r.msg.from || 'MAILER-DAEMON';
  const time = asctime(r.msg.time);
  let out = l.long
    ? `${left(status, 17)} ${right(String(r.msg.size), 8)} ${cut(time, 19)} ${sender}\n`
    : `${left(status, 11)} ${right(String(r.msg.size), 7)} ${cut(time, 20)} ${sender}\n`;
  let saved = '';
  for (const rcpt of r.msg.to) {
    const why = m.done.has(rcpt) ? 'delivered' : (failureReason(r.msg, rcpt) ?? r.msg.error ?? '');
    if (why !== saved) {
      saved = why;
      const show = why || 'reason unavailable';
      out += `${' '.repeat(Math.max(0, 76 - show.length))}(${show})\n`;
    }
    out += l.long ? `${left('', 17)} ${right('', 8)} ${left('', 19)} ${rcpt}\n` : `${left('', 11)} ${right('', 7)} ${left('', 20)} ${rcpt}\n`;
  }
  return out;
}

export function footer(totalBytes: number, count: number): string {
  if (count === 0) return 'Mail queue is empty\n';
  return `\n-- ${Math.floor(totalBytes / 1024)} Kbytes in ${count} Request${count === 1 ? '' : 's'}.\n`;
}

/** Postfix's queue names: active (being delivered), hold, deferred (tried before), incoming (not yet tried). */
export function queueName(m: ListedMessage): string {
  if (m.record.state === 'hold') return 'hold';
  if (m.active) return 'active';
  return m.record.attempts > 0 ? 'deferred' : 'incoming';
}

/** One JSON Lines object: `postqueue -j` field names plus ours. */
export function jsonEntry(m: ListedMessage, body?: Buffer): string {
  const r = m.record;
  const recipients = r.msg.to.map((address) => {
    const why = m.done.has(address) ? 'delivered' : (failureReason(r.msg, address) ?? r.msg.error);
    return why ? { address, delay_reason: why } : { address };
  });
  const out: Record<string, unknown> = {
    queue_name: queueName(m),
    queue_id: r.msg.id,
    arrival_time: Math.floor(r.msg.time / 1000),
    message_size: r.msg.size,
    forced_expire: false,
    sender: r.msg.from,
    recipients,
    path: r.storage === 'file' ? r.msg.textFile : null,
    attempts: r.attempts,
    next_attempt: r.state === 'hold' ? null : Math.floor(r.nextAttempt / 1000),
    error: r.msg.error ?? null,
    helo: r.msg.helo,
    peer_addr: r.msg.peerAddr,
  };
  if (r.msg.auth) out.auth = r.msg.auth;
  if (body) out.body_b64 = body.toString('base64');
  return `${JSON.stringify(out)}\n`;
}
