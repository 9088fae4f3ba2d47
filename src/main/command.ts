/** What the queue commands (runqueue, showqueue, flush, delete, …) share. */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A mistake in the command line: exit code 2, the message names the flag or argument. */
export class CommandUsageError extends Error {}

/** The queue directory of `--queue` (default ./queue); it must hold a queue. */
export function queueDirFlag(flag: string | undefined): string {
  const dir = resolve(flag ?? './queue');
  if (!existsSync(join(dir, 'db'))) {
    if (flag === undefined) {
      throw new CommandUsageError(`no queue in ./queue (${dir}: no db; serve creates it): give the queue with --queue DIR`);
    }
    throw new CommandUsageError(`--queue: ${dir} is not a queue directory (no ${join(dir, 'db')}; has serve run with it?)`);
  }
  return dir;
}

/** A whole-number flag value (undefined when the flag is absent). */
export function wholeNumber(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new CommandUsageError(`--${flag}: expected a whole number, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** node:util's parseArgs (strict, positionals allowed), its mistakes as usage errors (exit 2). */
export function parseCommandArgs<O extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[], options: O,
): ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; strict: true; options: O }>> {
  try {
    return parseArgs({ args: argv, allowPositionals: true, strict: true, options });
  } catch (e) {
    const err = e as Error & { code?: string };
    const flag = /'(-[^' ]+)/.exec(err.message)?.[1];
    const valid = Object.entries(options).map(([name, o]) => `--${name}${o.short ? `/-${o.short}` : ''}`).join(', ');
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag) {
      throw new CommandUsageError(`unknown option ${flag} (valid: ${valid}; see --help)`);
    }
    if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag) {
      const takes = /argument missing/.test(err.message) ? 'needs a value' : 'takes no value';
      throw new CommandUsageError(`${flag} ${takes} (see --help)`);
    }
    throw new CommandUsageError(err.message);
  }
}
