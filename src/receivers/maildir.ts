/**
 * MaildirReceiver: each recipient's copy into a Maildir (cr.yp.to/proto/maildir.html),
 * one per recipient address under a root: `<root>/<folder>/{tmp,new,cur}`.
 *
 * One copy: write `tmp/NAME`, fdatasync it, rename it to `new/NAME`, fsync `new/`.
 * NAME comes from the message itself — arrival time, queue id, host, size:
 * `<secs>.M<usec>Q<queue id>.<host>,S=<size>` — unique (a queue id is never
 * reused) and the same on every attempt, so a retry after a crash finds its
 * own earlier copy in `new/` (isDelivered) instead of writing a second one,
 * and a crash before the rename leaves only `tmp/NAME`, which the retry
 * overwrites and renames. prestart removes `tmp/` files older than 36 hours,
 * as the Maildir spec says.
 *
 * Folder names: the address in lower case, with every character outside
 * `a-z 0-9 @ . _ + = -` written as %XX (its UTF-8 bytes), and a leading dot
 * as %2E — so no address can name `..`, a path separator or a hidden folder;
 * names past 200 characters are cut and end in `~` and a hash.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { log } from '../core/log.ts';
import type { Message } from '../core/message.ts';
import { Receiver } from '../core/receiver.ts';
import { syncDir } from '../core/spool.ts';
import type { MessageBody, MessageFields, ReceiverConfig } from '../core/types.ts';
import { ReceiverOptionError } from './options.ts';

export interface MaildirOptions {
  /** Directory holding one Maildir per recipient address (created when needed). @default './mail' (from the working directory) */
  root?: string;
}

/** Bodies up to this size are read once for all recipients; larger ones are streamed per copy. */
const BUFFER_MAX = 8 * 1024 * 1024;
/** Copies written at once (each ends in two fsyncs). */
const PARALLEL = 8;
/** The Maildir spec's age for leftovers in tmp/. */
const TMP_MAX_AGE_MS = 36 * 3600_000;
/** Bounds of the start-up sweep of tmp/. */
const SWEEP_FOLDERS = 100_000;
const SWEEP_FILES = 10_000;

const SAFE = /^[a-z0-9@._+=-]$/;

/** The folder (one path segment under the root) of a recipient address. See the file's comment. */
export function maildirFolder(address: string): string {
  const lower = address.toLowerCase();
  let out = '';
  for (const ch of lower) {
    if (SAFE.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (out.startsWith('.')) out = `%2E${out.slice(1)}`;
  if (out === '') return '%';
  if (out.length > 200) out = `${out.slice(0, 150)}~${createHash('sha256').update(lower).digest('hex').slice(0, 32)}`;
  return out;
}

/** The file name of a message's copies: `<secs>.M<usec>Q<queue id>.<host>,S=<size>`. */
export function maildirName(message: Pick<MessageFields, 'id' | 'time' | 'size'>, host: string): string {
  const secs = Math.floor(message.time / 1000);
  const usec = (message.time % 1000) * 1000;
  // the spec's escapes for '/' and ':'; ',' would end the host early for readers of ",S="
  const h = host.replace(/\//g, '\\057').replace(/:/g, '\\072').replace(/,/g, '\\054');
  return `${secs}.M${usec}Q${message.id}.${h},S=${message.size}`;
}

export class MaildirReceiver extends Receiver {
  /** The root directory, absolute. */
  readonly root: string;
  /** Recipients whose copy this attempt wrote or found (isDelivered after deliver needs no file system). */
  private readonly done = new WeakMap<object, Set<string>>();

  constructor(options: MaildirOptions = {}) {
    super();
    const root = options.root ?? './mail';
    if (typeof root !== 'string' || root.length === 0 || root.includes('\0')) {
      throw new ReceiverOptionError('MaildirReceiver', 'root', `expected a directory path, got ${JSON.stringify(root)}`);
    }
    this.root = resolve(root);
  }

  /** Checks that the root is (or can be made) a writable directory; sweeps old tmp/ files. */
  override async prestart(config: ReceiverConfig): Promise<void> {
    await checkRoot(this.root);
    const swept = await sweepTmp(this.root, Date.now() - TMP_MAX_AGE_MS);
    if (swept) log.info('maildir: removed %d file(s) older than 36 hours from tmp/ folders', swept);
    log.info('maildir: delivering mail for %s into %s', config.domains.join(', '), this.root);
  }

  /** The folder of a recipient, one path segment under the root (override to map addresses your way). */
  protected folderFor(recipient: string): string {
    return maildirFolder(recipient);
  }

  /** The file name of a message's copies; the same on every attempt (see the file's comment). */
  protected fileName(message: Message): string {
    return maildirName(message, this.config.hostname);
  }

  override async isDelivered(message: Message, recipient?: string): Promise<boolean> {
    if (recipient === undefined) {
      for (const r of message.to) if (!(await this.isDelivered(message, r))) return false;
      return message.to.length > 0;
    }
    if (this.done.get(message)?.has(recipient)) return true;
    return exists(join(this.root, this.folderFor(recipient), 'new', this.fileName(message)));
  }

  override async deliver(message: Message, body: MessageBody): Promise<void> {
    const name = this.fileName(message);
    let done = this.done.get(message);
    if (!done) this.done.set(message, (done = new Set()));
    // recipients that share a folder (a repeated address, another case) get one copy
    const folders = new Map<string, string[]>();
    for (const rcpt of message.undelivered ?? message.to) {
      const folder = this.folderFor(rcpt);
      folders.set(folder, [...(folders.get(folder) ?? []), rcpt]);
    }
    const content = body.size <= BUFFER_MAX ? await body.buffer() : body;
    const failures: string[] = [];
    await eachLimited([...folders], PARALLEL, async ([folder, rcpts]) => {
      try {
        await this.writeCopy(join(this.root, folder), name, content);
        for (const r of rcpts) done.add(r);
      } catch (err) {
        failures.push(`${rcpts.join(', ')}: ${(err as Error).message}`);
      }
    });
    if (failures.length) throw new Error(`maildir: ${failures.join('; ')}`);
  }

  /** One copy into the Maildir `dir` (created when missing): tmp/, fdatasync, rename into new/, fsync new/. */
  protected async writeCopy(dir: string, name: string, content: Buffer | MessageBody): Promise<void> {
    const tmp = join(dir, 'tmp', name);
    try {
      await this.writeTmp(tmp, content);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await ensureMaildir(dir);
      await this.writeTmp(tmp, content);
    }
    await this.publish(tmp, join(dir, 'new', name));
  }

  /** Writes the whole message to `path` in tmp/ (truncating a leftover of a crashed attempt) and fdatasyncs it. */
  protected async writeTmp(path: string, content: Buffer | MessageBody): Promise<void> {
    const fh = await open(path, 'w', 0o600);
    try {
      if (Buffer.isBuffer(content)) await fh.writeFile(content);
      else for await (const chunk of content.stream()) await fh.write(chunk as Buffer);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  /** Moves a complete copy from tmp/ into new/ and makes the move durable. */
  protected async publish(tmp: string, final: string): Promise<void> {
    await rename(tmp, final);
    await syncDir(dirname(final));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Creates `dir` with tmp/, new/ and cur/ (and the root above it), and makes the new entries durable. */
async function ensureMaildir(dir: string): Promise<void> {
  const created = await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const sub of ['tmp', 'new', 'cur']) {
    await mkdir(join(dir, sub), { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  // each new directory's entry lives in its parent: sync from dir up to the parent of the topmost one created
  const top = created ? dirname(created) : dir;
  for (let p = dir; ; p = dirname(p)) {
    await syncDir(p);
    if (p === top || p === dirname(p)) break;
  }
}

/** The root, or the nearest directory above it that exists, must be a writable directory. */
async function checkRoot(root: string): Promise<void> {
  for (let p = root; ; p = dirname(p)) {
    let isDir: boolean;
    try {
      isDir = (await stat(p)).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && p !== dirname(p)) continue;
      throw new ReceiverOptionError('MaildirReceiver', 'root', `${p}: ${(err as Error).message}`);
    }
    const what = p === root ? root : `${root} cannot be created: ${p}`;
    if (!isDir) throw new ReceiverOptionError('MaildirReceiver', 'root', `${what} is not a directory`);
    try {
      await access(p, constants.W_OK | constants.X_OK);
    } catch {
      throw new ReceiverOptionError('MaildirReceiver', 'root', `${what} is not writable`);
    }
    return;
  }
}

/** Removes files older than `before` from `<root>/<folder>/tmp/`; returns how many. Bounded. */
async function sweepTmp(root: string, before: number): Promise<number> {
  let folders: string[];
  try {
    folders = await readdir(root);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const folder of folders.slice(0, SWEEP_FOLDERS)) {
    const tmp = join(root, folder, 'tmp');
    const files = await readdir(tmp).catch(() => [] as string[]);
    for (const f of files.slice(0, SWEEP_FILES)) {
      const st = await stat(join(tmp, f)).catch(() => undefined);
      if (st?.isFile() && st.mtimeMs < before && await unlink(join(tmp, f)).then(() => true, () => false)) removed++;
    }
  }
  return removed;
}

/** Runs `f` over `items`, at most `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, f: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await f(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
