/**
 * The spool directory: bodies too large to keep inline live in `<queue>/spool/<ID>.eml`.
 * A spool file is fdatasync'ed and its directory entry made durable before the
 * message's record is committed; a file without a record is crash debris.
 */
import { mkdir, open, readdir, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { isId } from './id.ts';
import { log } from './log.ts';

export function spoolDir(queueDir: string): string {
  return join(queueDir, 'spool');
}

export function spoolPath(queueDir: string, id: string): string {
  return join(queueDir, 'spool', `${id}.eml`);
}

/** Creates the queue and spool directories (and makes them durable). */
export async function ensureSpool(queueDir: string): Promise<void> {
  await mkdir(spoolDir(queueDir), { recursive: true });
  await syncDir(queueDir);
}

/** fsyncs a directory, making its entries (created, renamed, removed files) durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Group commit for directory entries: callers that arrive while an fsync of the
 * directory is running share the next one, so N concurrent messages cost about
 * two directory fsyncs, not N.
 */
export class DirSyncer {
  private fh: FileHandle | undefined;
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  constructor(readonly dir: string) {}

  /** Resolves once every entry created before the call is durable. */
  sync(): Promise<void> {
    if (!this.running) {
      this.running = this.run().finally(() => { this.running = undefined; });
      return this.running;
    }
    // an fsync already started may have missed our entry: wait for the one after it
    this.next ??= this.running.then(() => {
      this.next = undefined;
      return this.sync();
    });
    return this.next;
  }

  private async run(): Promise<void> {
    this.fh ??= await open(this.dir, 'r');
    await this.fh.sync();
  }

  async close(): Promise<void> {
    await this.next?.catch(() => {});
    await this.running?.catch(() => {});
    await this.fh?.close();
    this.fh = undefined;
  }
}

/**
 * Removes spool files that have no committed record (left by a crash mid-DATA)
 * and anything in the spool directory that is not a queue file.
 * Returns the number of files removed.
 */
export async function removeOrphans(queueDir: string, hasRecord: (id: string) => boolean): Promise<number> {
  let removed = 0;
  for (const name of await readdir(spoolDir(queueDir))) {
    const id = name.endsWith('.eml') ? name.slice(0, -4) : '';
    if (isId(id) && hasRecord(id)) continue;
    await unlink(join(spoolDir(queueDir), name)).catch(() => {});
    log.info('spool: removed %s (no committed record)', name);
    removed++;
  }
  return removed;
}
