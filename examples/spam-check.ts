/**
 * A spam check in `predeliver`: a few plain rules add up to a score, and a message
 * that scores SPAM_THRESHOLD or more is refused with `550 5.7.1` before the 250 —
 * the sender's own server then tells its user (no bounce from us, no queued spam).
 * Accepted mail goes into Maildirs (the built-in MaildirReceiver, extended).
 *
 *   MAILDIR_ROOT=./mail npx smtp-receive serve ./spam-check.ts --domain example.com
 *
 * The rules look at the raw text (no MIME decoding) of the first 64 KiB; a real
 * filter would ask rspamd or SpamAssassin from here — predeliver runs in a worker
 * thread, with a time limit (`--predeliver-timeout`), so a slow check never blocks
 * other sessions. The reasons go into the reply: fine for an example, a hint to
 * spammers in production (log them with message.log instead).
 */
import { MaildirReceiver, SmtpReply, type Message, type MessageBody } from 'smtp-receive';

/** Score from which a message is refused. */
export const SPAM_THRESHOLD = 5;
/** Words and phrases that cost 3 points each (case-insensitive, whole words). */
const BANNED = ['viagra', 'casino', 'lottery winner', 'wire transfer', 'crypto giveaway'];
/** More envelope recipients than this cost 2 points. */
const MANY_RECIPIENTS = 10;

export interface Verdict {
  score: number;
  reasons: string[];
}

/** Scores a message: its text (headers and start of the body) and its envelope recipients. */
export function spamScore(text: string, recipients: number): Verdict {
  const split = text.indexOf('\r\n\r\n');
  const head = split < 0 ? text : text.slice(0, split + 2);
  const header = (name: string): string | undefined =>
    new RegExp(`^${name}:[ \\t]*(.*(?:\\r\\n[ \\t].*)*)`, 'im').exec(head)?.[1]?.replace(/\r\n[ \t]+/g, ' ');
  const reasons: string[] = [];
  let score = 0;
  const add = (points: number, reason: string): void => {
    score += points;
    reasons.push(reason);
  };
  for (const word of BANNED) {
    if (new RegExp(`\\b${word.replace(/ /g, '\\s+')}\\b`, 'i').test(text)) add(3, `banned word "${word}"`);
  }
  if (header('date') === undefined) add(2, 'no Date header');
  if (header('message-id') === undefined) add(2, 'no Message-ID header');
  if (header('from') === undefined) add(3, 'no From header');
  const subject = header('subject') ?? '';
  if ((subject.match(/[A-Z]/g)?.length ?? 0) >= 8 && !/[a-z]/.test(subject)) add(1, 'subject in capitals');
  if (recipients > MANY_RECIPIENTS) add(2, `${recipients} recipients`);
  return { score, reasons };
}

export default class SpamCheckingMaildir extends MaildirReceiver {
  constructor() {
    super({ root: process.env.MAILDIR_ROOT }); // default ./mail
  }

  override async predeliver(message: Message, body: MessageBody): Promise<void> {
    const { score, reasons } = spamScore(await start(body, 65_536), message.to.length);
    if (score >= SPAM_THRESHOLD) {
      message.log('refused as spam, score %d: %s', score, reasons.join(', '));
      throw new SmtpReply(550, '5.7.1', `message refused as spam (score ${score}: ${reasons.join(', ')})`.slice(0, 400));
    }
    if (score > 0) message.log('spam score %d: %s', score, reasons.join(', '));
  }
}

/** The first `limit` bytes of the stored message (our Received: header first) as text. */
async function start(body: MessageBody, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body.stream()) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size >= limit) break; // leaving the loop closes the stream
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('latin1');
}
