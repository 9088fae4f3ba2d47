/**
 * The example of Net::SMTP::Receive's manual (the seed of this project), rewritten:
 * accept mail for one domain (checkRcptTo), check each message before it is queued
 * (predeliver), deliver it (deliver), and tell the queue what is delivered
 * (isDelivered) so that it keeps the message until every recipient has its copy.
 *
 * Delivery: one file per recipient, INBOX_DIR/<local part>/<queue id>.eml — written
 * under a temporary name, fsynced, then renamed, so a retry after a crash writes the
 * same file again and no reader ever sees half a message under the final name.
 *
 *   INBOX_DOMAIN=example.com INBOX_DIR=./inbox npx smtp-receive serve ./seed.ts
 *
 * (receiver modules are constructed with no arguments: configure them with the
 * environment, a file, or constants in the module.)
 */
import { mkdir, open, rename, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  Receiver, SmtpReply, type Message, type MessageBody, type RcptVerdict, type SessionInfo,
} from 'smtp-receive';

/** The one domain we receive mail for. */
const DOMAIN = (process.env.INBOX_DOMAIN ?? 'example.com').toLowerCase();
/** Where delivered mail goes: one folder per local part. */
const INBOX = process.env.INBOX_DIR ?? './inbox';
/** Addresses that go to someone else: the seed's `return (0, @redirect)`. */
const ALIASES: Record<string, string[]> = {
  postmaster: [`admin@${DOMAIN}`],
  abuse: [`admin@${DOMAIN}`],
};
/** Local parts we accept: also a safe folder name (no '/', no leading dot). */
const LOCAL_PART = /^[a-z0-9][a-z0-9._+-]{0,63}$/;

export default class MyMailReceiver extends Receiver {
  // check_rcptto: the place to prevent open relaying
  override async checkRcptTo(address: string, _session: SessionInfo): Promise<RcptVerdict> {
    const at = address.lastIndexOf('@');
    const local = address.slice(0, at).toLowerCase();
    if (at < 0 || address.slice(at + 1).toLowerCase() !== DOMAIN) return '550 5.7.1 relaying denied'; // the seed's string form
    if (ALIASES[local]) return { redirect: ALIASES[local] };
    if (!LOCAL_PART.test(local)) return new SmtpReply(550, '5.1.1', 'no such mailbox');
    return undefined; // accepted as it stands
  }

  // predeliver: policy checks before the 250; throw an SMTP reply to reject the message
  override async predeliver(_message: Message, body: MessageBody): Promise<void> {
    const head = await headerBlock(body);
    if (!/^from:/im.test(head)) throw new SmtpReply(550, '5.6.0', 'a message needs a From: header (RFC 5322)');
  }

  // deliver: throw to retry later (the error is kept as message.error and shown by showqueue)
  override async deliver(message: Message, body: MessageBody): Promise<void> {
    for (const rcpt of message.undelivered ?? message.to) {
      const file = fileFor(message, rcpt);
      await mkdir(dirname(file), { recursive: true });
      const tmp = `${file}.tmp`;
      const fh = await open(tmp, 'w', 0o600);
      try {
        for await (const chunk of body.stream()) await fh.write(chunk as Buffer);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
      await syncDir(dirname(file)); // the rename itself on disk
      message.log('delivered to %s', file);
    }
  }

  // is_delivered: per recipient (showqueue marks the ones done), or the whole message
  override async isDelivered(message: Message, recipient?: string): Promise<boolean> {
    const rcpts = recipient ? [recipient] : message.to;
    for (const rcpt of rcpts) if (!await exists(fileFor(message, rcpt))) return false;
    return true;
  }

  // max_datalength, max_recipients: smaller than the defaults (20,000,000 and 10,000)
  override maxDataLength(): number {
    return 10_000_000;
  }

  override maxRecipients(): number {
    return 100;
  }
}

function fileFor(message: Message, rcpt: string): string {
  const local = rcpt.slice(0, rcpt.lastIndexOf('@')).toLowerCase();
  return join(INBOX, local, `${message.id}.eml`);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The message's header section (up to the first empty line; at most 64 KiB are read). */
async function headerBlock(body: MessageBody): Promise<string> {
  let text = '';
  for await (const chunk of body.stream()) {
    text += (chunk as Buffer).toString('latin1');
    const end = text.indexOf('\r\n\r\n');
    if (end >= 0) return text.slice(0, end + 2);
    if (text.length > 65_536) break;
  }
  return text;
}
