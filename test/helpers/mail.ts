/** Sending with a real SMTP client (nodemailer) and reading Maildirs, for the built-in receivers' tests. */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import nodemailer from 'nodemailer';

/** Sends `raw` (the message as is) with this envelope through nodemailer; returns the queue id. */
export async function sendRaw(port: number, envelope: { from: string; to: string[] }, raw: string | Buffer): Promise<string> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    const info = await t.sendMail({ envelope, raw });
    const m = /queued as ([0-9A-Z]{17})/.exec(info.response);
    if (!m) throw new Error(`not queued: ${info.response}`);
    return m[1]!;
  } finally {
    t.close();
  }
}

/** A test message with lines that need dot-stuffing and a token to find it by. */
export function testMessage(token: string, lines = 20): Buffer {
  const out = [`Message-ID: <${token}@test.invalid>`, `Subject: ${token}`, 'From: sender@example.org', ''];
  for (let i = 0; i < lines; i++) out.push(i % 5 === 0 ? `.${token} line ${i}` : `${token} line ${i} ${'x'.repeat(i)}`);
  return Buffer.from(`${out.join('\r\n')}\r\n`, 'latin1');
}

/** File names in `<root>/<folder>/<sub>` ([] when the directory does not exist). */
export async function maildirEntries(root: string, folder: string, sub: 'new' | 'tmp' | 'cur'): Promise<string[]> {
  return (await readdir(join(root, folder, sub)).catch(() => [] as string[])).sort();
}

/** The contents of every file in `<root>/<folder>/new`, by name. */
export async function newMail(root: string, folder: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const name of await maildirEntries(root, folder, 'new')) out.set(name, await readFile(join(root, folder, 'new', name)));
  return out;
}

/** Maildir file names as MaildirReceiver writes them: `<secs>.M<usec>Q<queue id>.<host>,S=<size>`. */
export const MAILDIR_NAME = /^(\d+)\.M(\d{1,6})Q([0-9A-Z]{17})\.([A-Za-z0-9.\\-]+),S=(\d+)$/;
