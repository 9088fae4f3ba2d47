/**
 * How the commands that run a receiver themselves (runqueue and showqueue
 * with no daemon; showqueue's isDelivered) find it: `--receiver FILE` or the
 * built-in flags, else what `serve` recorded in the queue — its module, or
 * its built-in receiver with the settings it ran with — else the base
 * Receiver. Says which one when it is not the flags'.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { createReceiver } from '../core/load.ts';
import type { Receiver } from '../core/receiver.ts';
import type { RecordedReceiver } from '../core/receiver-record.ts';
import type { ReceiverConfig } from '../core/types.ts';
import type { BuiltinReceiver } from '../receivers/index.ts';
import { ReceiverOptionError } from '../receivers/options.ts';
import { describeBuiltin, type RecordedBuiltin } from '../receivers/recorded.ts';
import { BUILTIN_OPTION_FLAGS, secretFromFile } from './builtin-flags.ts';
import { CommandUsageError } from './command.ts';

export interface FoundReceiver {
  /** The receiver module (absolute); undefined: `builtin`, else the base Receiver. */
  path: string | undefined;
  builtin?: BuiltinReceiver;
  source: 'flag' | 'recorded' | 'default';
}

export interface ReceiverChoice {
  /** `--receiver FILE`. */
  module?: string;
  /**
   * A built-in receiver (the built-in flags'). Of the recorded one's kind, and
   * naming the same root, URL or smarthost or none, it changes the recorded one:
   * `--webhook-secret S` gives the secret that serve had inline.
   */
  builtin?: BuiltinReceiver;
  /** A recorded receiver's secrets are not needed (showqueue: isDelivered signs and sends nothing). */
  secretsOptional?: boolean;
}

/** `recorded`: what serve recorded in the queue (or, through the socket, what it runs). */
export function findReceiver(choice: ReceiverChoice, recorded: RecordedReceiver, say: (line: string) => void): FoundReceiver {
  if (choice.module) return { path: resolve(choice.module), source: 'flag' };
  const rec = recorded.builtin;
  if (choice.builtin && !(rec && sameReceiver(choice.builtin, rec))) return { path: undefined, builtin: choice.builtin, source: 'flag' };
  if (recorded.module) {
    if (!existsSync(recorded.module)) throw new Error(`the receiver module recorded by serve, ${recorded.module}, does not exist; give one with --receiver`);
    say(`using the receiver recorded by serve: ${recorded.module}`);
    return { path: recorded.module, source: 'recorded' };
  }
  if (rec) {
    const { builtin, secretFrom } = restore(rec, choice);
    const { name, where } = describeBuiltin(rec);
    say(`using the built-in ${name} recorded by serve: ${where}${secretFrom ? ` (signed with the secret in ${secretFrom})` : ''}`);
    return { path: undefined, builtin, source: 'recorded' };
  }
  say('using the built-in receiver (no --receiver given and none recorded in the queue)');
  return { path: undefined, source: 'default' };
}

/** The receiver found, built in this thread; a built-in's bad option is a usage error that names its flag. */
export async function createFound(found: FoundReceiver, config: ReceiverConfig): Promise<Receiver> {
  try {
    return await createReceiver(found.path, config, found.builtin);
  } catch (err) {
    if (!found.builtin || !ReceiverOptionError.is(err)) throw err;
    const flag = BUILTIN_OPTION_FLAGS[`${found.builtin.kind}.${err.option}`];
    throw new CommandUsageError(flag ? `--${flag}: ${err.detail}` : err.message);
  }
}

/** The option that names where a built-in delivers: another one is another receiver, not the recorded one changed. */
function sameReceiver(spec: BuiltinReceiver, rec: RecordedBuiltin): boolean {
  if (spec.kind !== rec.kind) return false;
  const o = ('options' in spec ? spec.options ?? {} : {}) as Record<string, unknown>;
  switch (spec.kind) {
    case 'maildir':
      return o.root === undefined || resolve(o.root as string) === rec.options.root;
    case 'webhook':
      return o.url === undefined || o.url === rec.options.url;
    case 'relay':
      return o.host === undefined || (o.host === rec.options.host && (o.port ?? 25) === (rec.options.port ?? 25));
    default:
      return true;
  }
}

/** The recorded built-in, with the options `choice` gives over its own and its secrets given again. */
function restore(rec: RecordedBuiltin, choice: ReceiverChoice): { builtin: BuiltinReceiver; secretFrom?: string } {
  const given = Object.entries(choice.builtin && 'options' in choice.builtin ? choice.builtin.options ?? {} : {}).filter(([, v]) => v !== undefined);
  const options: Record<string, unknown> = { ...rec.options, ...Object.fromEntries(given) };
  let secretFrom: string | undefined;
  if (rec.kind === 'webhook' && options.secret === undefined && rec.secretFile !== undefined && !choice.secretsOptional) {
    // read now, as serve read it at its start: the file may have been rotated since
    try {
      options.secret = secretFromFile(rec.secretFile, 'the webhook secret file recorded by serve');
    } catch (err) {
      throw new CommandUsageError(`${(err as Error).message}; give the secret with --webhook-secret-file FILE or --webhook-secret SECRET`);
    }
    secretFrom = rec.secretFile;
  }
  const missing = rec.withheld.filter((name) => options[name] === undefined);
  if (missing.length && !choice.secretsOptional) throw new CommandUsageError(missingMessage(rec, missing));
  return { builtin: { kind: rec.kind, options } as BuiltinReceiver, secretFrom };
}

function missingMessage(rec: RecordedBuiltin, missing: string[]): string {
  const what = `the built-in ${describeBuiltin(rec).name} that serve ran`;
  if (rec.kind === 'webhook' && missing.length === 1 && missing[0] === 'secret') {
    return `${what} signed its requests with a secret given inline (--webhook-secret), which the queue does not keep: ` +
      'give it with --webhook-secret-file FILE or --webhook-secret SECRET';
  }
  // options only a program can give (webhook headers, relay auth): they may hold credentials, so they are not kept
  return `${what} had options the queue does not keep (${missing.join(', ')}: they may hold credentials) and no flag gives: ` +
    'run runqueue while serve runs (the pass then runs in the daemon), or call runQueue() with `builtin` from a program';
}
