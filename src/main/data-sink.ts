/**
 * The DATA sink: takes smtp-server's (dot-unstuffed) data stream and stores it
 * behind the trace headers, never holding a large message whole in memory.
 *
 * - Up to `inlineMax` stored bytes the message is kept in memory and becomes the
 *   inline body committed into LMDB with its record (no file at all).
 * - Past it, what is held goes to the spool file and the rest streams there,
 *   with back-pressure on the client; the file is fdatasync'ed before we resolve.
 * - Past `maxSize` body bytes, nothing more is stored and the result is `too-big`;
 *   the stream is still drained so the client gets its 552 at the end of DATA.
 */
import { createWriteStream, fdatasync, close, unlink, type WriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { LineEndNormaliser } from './line-ends.ts';

export interface SinkOptions {
  /** Trace headers to store before the body. */
  header: Buffer;
  /** Largest stored size kept inline (bytes). */
  inlineMax: number;
  /** Largest body accepted (bytes, as received after dot-unstuffing). */
  maxSize: number;
  /** Where a large body goes. */
  spoolFile: string;
}

export type SinkResult =
  | { kind: 'inline'; body: Buffer; size: number }
  | { kind: 'file'; size: number }
  | { kind: 'too-big'; received: number }
  | { kind: 'failed'; error: Error };

/** The descriptor of an open WriteStream (public, but missing from @types/node 20). */
const fdOf = (ws: WriteStream): number | null => (ws as unknown as { fd: number | null }).fd;

export function receiveData(stream: Readable, o: SinkOptions): Promise<SinkResult> {
  return new Promise((resolve) => {
    const fixer = new LineEndNormaliser();
    let held: Buffer[] = [o.header];
    let size = o.header.length;
    let received = 0;
    let file: WriteStream | undefined;
    let failure: Error | undefined;
    let tooBig = false;
    let settled = false;

    const finish = (r: SinkResult): void => {
      if (settled) return;
      settled = true;
      resolve(r);
    };
    const discardFile = (): void => {
      if (!file) return;
      const fd = fdOf(file);
      file.destroy();
      if (typeof fd === 'number') close(fd, () => {});
      unlink(o.spoolFile, () => {});
    };
    const fail = (error: Error): void => {
      failure ??= error;
      held = [];
      discardFile();
    };
    const toFile = (chunks: Buffer[]): void => {
      if (!file) {
        file = createWriteStream(o.spoolFile, { flags: 'wx', highWaterMark: 256 * 1024, autoClose: false });
        file.on('error', fail);
        file.on('drain', () => stream.resume());
        file.cork();
        for (const c of chunks) file.write(c);
        process.nextTick(() => file?.uncork());
        return;
      }
      for (const c of chunks) {
        if (!file.write(c)) stream.pause();
      }
    };
    const add = (chunk: Buffer): void => {
      if (tooBig || failure) return; // drain what is left
      received += chunk.length;
      if (received > o.maxSize) {
        tooBig = true;
        held = [];
        discardFile();
        return;
      }
      const data = fixer.fix(chunk);
      size += data.length;
      if (file) {
        toFile([data]);
      } else {
        held.push(data);
        if (size > o.inlineMax) {
          toFile(held);
          held = [];
        }
      }
    };

    stream.on('data', add);
    stream.on('error', (err: Error) => {
      fail(err);
      finish({ kind: 'failed', error: err });
    });
    stream.on('close', () => {
      // destroyed without 'end' (client gone mid-DATA, no error given): nothing is kept
      if (!stream.readableEnded) {
        fail(new Error('data stream closed before the end of the message'));
        finish({ kind: 'failed', error: failure! });
      }
    });
    stream.on('end', () => {
      if (tooBig) return finish({ kind: 'too-big', received });
      if (failure) return finish({ kind: 'failed', error: failure });
      const tail = fixer.end();
      if (tail) add(tail);
      if (!file) return finish({ kind: 'inline', body: held.length === 1 ? held[0]! : Buffer.concat(held, size), size });
      const ws = file;
      ws.end(() => {
        if (failure) return finish({ kind: 'failed', error: failure });
        const fd = fdOf(ws) as number;
        fdatasync(fd, (syncErr) => {
          close(fd, (closeErr) => {
            const err = syncErr ?? closeErr;
            if (err) {
              unlink(o.spoolFile, () => {});
              return finish({ kind: 'failed', error: err });
            }
            finish({ kind: 'file', size });
          });
        });
      });
    });
  });
}
