/**
 * Recipients that failed for good (a 5xx from the next hop): recorded by
 * `deliver` in the message's `failed` field, which persists with the queue
 * record like any field. The framework counts them as done (the message is
 * finished once every other recipient is delivered), leaves them out of
 * `message.undelivered`, runs the receiver's `failed` hook once for each, and
 * showqueue gives their reply as the reason.
 */
import { SmtpReply, parseReply, type ReplyData } from './reply.ts';
import type { FailedRecipient, MessageFields } from './types.ts';

/**
 * Marks `recipient` failed for good with the reply that said so (an SmtpReply,
 * its plain data, or the reply text "550 5.1.1 No such user"). Call it from
 * `deliver`; a recipient already marked keeps its first reply.
 */
export function failRecipient(message: MessageFields, recipient: string, reply: SmtpReply | ReplyData | string): void {
  const data = replyData(reply);
  if (data.code < 500) throw new RangeError(`failRecipient(${recipient}): a failure for good needs a 5xx reply, got ${data.code} (throw to retry later)`);
  const list = message.failed ?? (message.failed = []);
  if (list.some((f) => f.recipient === recipient)) return;
  list.push({ recipient, reply: data, time: Date.now() });
}

/** The recipients marked failed for good. */
export function failedSet(message: Pick<MessageFields, 'failed'>): Set<string> {
  const out = new Set<string>();
  for (const f of message.failed ?? []) out.add(f.recipient);
  return out;
}

/** Why a recipient failed for good, one line ("failed for good: 550 5.1.1 No such user"), or undefined. */
export function failureReason(message: Pick<MessageFields, 'failed'>, recipient: string): string | undefined {
  const f = message.failed?.find((x) => x.recipient === recipient);
  return f ? `failed for good: ${f.reply.code} ${f.reply.enhanced} ${f.reply.text}` : undefined;
}

/** The recorded reply of a failure as an SmtpReply (for the `failed` hook). */
export function failureReply(f: FailedRecipient): SmtpReply {
  try {
    return SmtpReply.fromData(f.reply);
  } catch {
    return new SmtpReply(550, '5.0.0', f.reply.text || 'Requested action not taken');
  }
}

function replyData(reply: SmtpReply | ReplyData | string): ReplyData {
  if (typeof reply === 'string') {
    try {
      return parseReply(reply).toData();
    } catch {
      return { code: 550, enhanced: '5.0.0', text: reply.replace(/[\x00-\x1f\x7f]+/g, ' ').trim() };
    }
  }
  if (SmtpReply.is(reply)) return reply.toData();
  return { code: reply.code, enhanced: reply.enhanced, text: reply.text };
}
