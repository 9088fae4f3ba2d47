/**
 * How every command that runs user code finds the receiver module: the
 * `--receiver` flag, else the module `serve` recorded in the queue, else the
 * built-in receiver. Says which one was used when it is not the flag's.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

export interface FoundReceiver {
  path: string | undefined;
  source: 'flag' | 'recorded' | 'default';
}

/** `recorded`: the module serve recorded in the queue (or, through the socket, the one it runs). */
export function findReceiver(flag: string | undefined, recorded: string | undefined, say: (line: string) => void): FoundReceiver {
  if (flag) return { path: resolve(flag), source: 'flag' };
  if (recorded) {
    if (!existsSync(recorded)) throw new Error(`the receiver module recorded by serve, ${recorded}, does not exist; give one with --receiver`);
    say(`using the receiver recorded by serve: ${recorded}`);
    return { path: recorded, source: 'recorded' };
  }
  say('using the built-in receiver (no --receiver given and none recorded in the queue)');
  return { path: undefined, source: 'default' };
}
