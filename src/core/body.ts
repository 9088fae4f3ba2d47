/** The one body API hooks see, whatever the storage (inline bytes or a spool file). */
import { createReadStream, existsSync, renameSync, writeFileSync } from 'node:fs';
import { access, readFile, rename, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { StoredHead } from './auth.ts';
import { headedStream, materialize, readHeaded } from './head.ts';
import type { MessageBody } from './types.ts';

export class StoredBody implements MessageBody {
  private written: Promise<string> | undefined;

  /**
   * @param inline the stored bytes when the body is inline (undefined: a spooled file)
   * @param textFile the spool file, or where an inline body is written out on first `path()`
   * @param head for a spooled body: what authentication put in place of its first bytes
   */
  constructor(
    private readonly inline: Buffer | undefined,
    readonly size: number,
    private readonly textFile: string,
    private readonly head?: StoredHead,
  ) {}

  stream(): Readable {
    if (this.inline) return Readable.from([this.inline], { objectMode: false });
    return this.head ? headedStream(this.textFile, this.head) : createReadStream(this.textFile);
  }

  async buffer(): Promise<Buffer> {
    if (this.inline) return this.inline;
    return this.head ? readHeaded(this.textFile, this.head) : readFile(this.textFile);
  }

  path(): Promise<string> {
    if (!this.inline) return Promise.resolve().then(() => this.pathSync());
    this.written ??= writeOut(this.textFile, this.inline);
    return this.written;
  }

  /**
   * `path()` for synchronous callers — the seed's TEXTFILE field, a getter on
   * the message in a worker thread (never on the main thread).
   */
  pathSync(): string {
    if (!this.inline) {
      if (this.head) materialize(this.textFile, this.head, tmpName(this.textFile));
      return this.textFile;
    }
    if (!existsSync(this.textFile)) {
      const tmp = tmpName(this.textFile);
      writeFileSync(tmp, this.inline, { flag: 'wx' });
      renameSync(tmp, this.textFile);
    }
    return this.textFile;
  }
}

/** A temporary name beside `file`; the spool's start-up clean-up removes any left by a crash. */
const tmpName = (file: string): string => `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;

/** Writes an inline body to its text file once (a cache of LMDB's copy: no fsync needed). */
async function writeOut(file: string, bytes: Buffer): Promise<string> {
  try {
    await access(file);
    return file;
  } catch {
    const tmp = tmpName(file);
    await writeFile(tmp, bytes, { flag: 'wx' });
    await rename(tmp, file);
    return file;
  }
}
