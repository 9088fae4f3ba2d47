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
  /** The client went away before the end of the message (routine traffic, not a failure of ours). */
  | { kind: 'aborted'; received: number }
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
    /** Set once the spool file is being discarded; resolves when it is closed and removed. */
    let discarded: Promise<void> | undefined;
    const discardFile = (): void => {
      const ws = file;
      if (!ws || discarded) return;
      // destroy() closes the descriptor (also one still being opened): closing it here as well could
      // close a descriptor number that another file got meanwhile. Remove the file once it is closed,
      // so an open still in flight cannot re-create it after the unlink.
      discarded = new Promise((done) => {
        const remove = (): void => unlink(o.spoolFile, () => done());
        if (ws.closed) remove();
        else ws.once('close', remove);
      });
      ws.destroy();
    };
    /** Answers only after a discarded spool file is gone. */
    const finishAfterDiscard = (r: SinkResult): void => {
      if (discarded) void discarded.then(() => finish(r));
      else finish(r);
    };
    const fail = (error: Error): void => {
      failure ??= error;
      held = [];
      discardFile();
      // the stream may be paused waiting for the file's 'drain', which will not come now: read on to the end
      stream.resume();
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
      // smtp-server's "Connection closed before the message was received in full"
      const gone = (err as NodeJS.ErrnoException).code === 'ECONNECTION';
      finishAfterDiscard(gone ? { kind: 'aborted', received } : { kind: 'failed', error: err });
    });
    stream.on('close', () => {
      // destroyed without 'end' (client gone mid-DATA, no error given): nothing is kept
      if (!stream.readableEnded) {
        fail(new Error('data stream closed before the end of the message'));
        finishAfterDiscard({ kind: 'aborted', received });
      }
    });
    stream.on('end', () => {
      if (tooBig) return finishAfterDiscard({ kind: 'too-big', received });
      if (failure) return finishAfterDiscard({ kind: 'failed', error: failure });
      const tail = fixer.end();
      if (tail) add(tail);
      if (!file) return finish({ kind: 'inline', body: held.length === 1 ? held[0]! : Buffer.concat(held, size), size });
      const ws = file;
      ws.end(() => {
        if (failure) return finishAfterDiscard({ kind: 'failed', error: failure });
        const fd = fdOf(ws) as number;
        fdatasync(fd, (syncErr) => {
          close(fd, (closeErr) => {
            const err = syncErr ?? closeErr;
            if (err) return unlink(o.spoolFile, () => finish({ kind: 'failed', error: err }));
            finish({ kind: 'file', size });
          });
        });
      });
    });
  });
}
