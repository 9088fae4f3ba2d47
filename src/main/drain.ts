/** Waiting for a writable stream to drain (or close), without leaving a listener behind. */
import type { Writable } from 'node:stream';

export function drained(out: Writable): Promise<void> {
  return new Promise<void>((resolve) => {
    // a listing waits here thousands of times: the listener that did not fire must go too
    const done = (): void => {
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}
