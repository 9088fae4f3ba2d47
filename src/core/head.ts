/**
 * Reading a stored message whose top was changed by authentication (see
 * StoredHead in auth.ts): the head's bytes, then the stored bytes from `cut`.
 * A spooled body is never rewritten for it unless a hook asks for a file path
 * (`materialize`); then the file starts with the head's bytes — never true of
 * a file as first stored, which starts with our Received header — and is read
 * as it is from then on.
 */
import { closeSync, createReadStream, fdatasyncSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { StoredHead } from './auth.ts';

/** Inline stored bytes as readers see them. */
export function spliceInline(stored: Buffer, head: StoredHead | undefined): Buffer {
  if (!head) return stored;
  return Buffer.concat([head.bytes, stored.subarray(head.cut)]);
}

/** The file starts with the head's bytes already (materialized). */
async function startsWithHead(file: string, head: StoredHead): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const start = Buffer.alloc(head.bytes.length);
    const { bytesRead } = await fh.read(start, 0, start.length, 0);
    return bytesRead === start.length && start.equals(head.bytes);
  } finally {
    await fh.close();
  }
}

/** The stored bytes of a spooled message with a head, as a stream. */
export function headedStream(file: string, head: StoredHead): Readable {
  return Readable.from((async function* () {
    if (await startsWithHead(file, head)) {
      yield* createReadStream(file);
      return;
    }
    yield Buffer.from(head.bytes);
    yield* createReadStream(file, { start: head.cut });
  })(), { objectMode: false });
}

/** The stored bytes of a spooled message with a head, in one buffer. */
export async function readHeaded(file: string, head: StoredHead): Promise<Buffer> {
  const stored = await readFile(file);
  const h = Buffer.from(head.bytes.buffer, head.bytes.byteOffset, head.bytes.byteLength);
  return stored.subarray(0, h.length).equals(h) ? stored : Buffer.concat([h, stored.subarray(head.cut)]);
}

/**
 * Rewrites a spooled file to hold the head (a copy of the body: only for a hook
 * that wants a path), synced before it replaces the original; a crash leaves
 * one or the other, both read the same. Worker threads only (synchronous I/O).
 */
export function materialize(file: string, head: StoredHead, tmp: string): void {
  const fd = openSync(file, 'r');
  try {
    const start = Buffer.alloc(head.bytes.length);
    if (readSync(fd, start, 0, start.length, 0) === start.length && start.equals(head.bytes)) return;
    const out = openSync(tmp, 'wx');
    try {
      writeSync(out, head.bytes);
      const chunk = Buffer.allocUnsafe(1024 * 1024);
      for (let pos = head.cut; ;) {
        const n = readSync(fd, chunk, 0, chunk.length, pos);
        if (n === 0) break;
        writeSync(out, chunk, 0, n);
        pos += n;
      }
      fdatasyncSync(out);
    } finally {
      closeSync(out);
    }
    renameSync(tmp, file);
  } finally {
    closeSync(fd);
  }
}
