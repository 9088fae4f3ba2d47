/**
 * The flags that choose and configure a built-in receiver (--maildir,
 * --webhook…, --relay…): one definition for `serve`, which runs it, and for
 * `runqueue` and `showqueue`, which take them to deliver (or list) with one
 * explicitly instead of the one serve recorded.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { BuiltinReceiver } from '../receivers/index.ts';
import { CommandUsageError, wholeNumber } from './command.ts';

/** For parseArgs (node:util), as each command's flag table spreads it in. */
export const BUILTIN_FLAGS = {
  maildir: { type: 'string' }, webhook: { type: 'string' }, 'webhook-secret': { type: 'string' }, 'webhook-secret-file': { type: 'string' },
  'webhook-timeout': { type: 'string' }, relay: { type: 'string' }, 'relay-timeout': { type: 'string' },
} as const;

/** Their lines in --help (each command's usage text takes them as they are). */
export const BUILTIN_USAGE = `  --maildir DIR            built-in Maildir receiver: the directory holding one Maildir
                           per recipient address (default ./mail)
  --webhook URL            built-in webhook receiver: POST each message (message/rfc822,
                           envelope in X-Smtp-Receive-* headers) to URL; 2xx delivers it
  --webhook-secret SECRET  sign each request: X-Smtp-Receive-Signature, HMAC-SHA256
                           (visible to other local users in ps: prefer --webhook-secret-file)
  --webhook-secret-file FILE
                           the same, the secret read from FILE at start-up (one line)
  --webhook-timeout MS     time limit of one request (default 30000)
  --relay HOST[:PORT]      built-in relay: forward each message to this smarthost over SMTP
                           (port 25 by default); a 5xx fails that recipient for good
  --relay-timeout MS       time limit of connecting and of each reply (default 60000)
`;

/** A built-in receiver's option (in errors: `webhook.url`) → the flag that sets it. */
export const BUILTIN_OPTION_FLAGS: Record<string, string> = {
  'maildir.root': 'maildir', 'webhook.url': 'webhook', 'webhook.secret': 'webhook-secret',
  'webhook.timeout': 'webhook-timeout', 'relay.host': 'relay', 'relay.port': 'relay', 'relay.timeout': 'relay-timeout',
};

/** The flags that choose and configure a built-in receiver, their values parsed. */
export interface BuiltinFlags {
  maildir?: string;
  webhook?: string;
  'webhook-secret'?: string;
  /** A file holding the secret (not visible in `ps` as --webhook-secret is). */
  'webhook-secret-file'?: string;
  'webhook-timeout'?: number;
  relay?: string;
  'relay-timeout'?: number;
}

/** The parsed values of BUILTIN_FLAGS as BuiltinFlags (the time limits as numbers). */
export function builtinFlagValues(v: { [K in keyof typeof BUILTIN_FLAGS]?: string }): BuiltinFlags {
  return {
    maildir: v.maildir, webhook: v.webhook, 'webhook-secret': v['webhook-secret'], 'webhook-secret-file': v['webhook-secret-file'],
    'webhook-timeout': wholeNumber('webhook-timeout', v['webhook-timeout']), relay: v.relay,
    'relay-timeout': wholeNumber('relay-timeout', v['relay-timeout']),
  };
}

/**
 * The built-in receiver the flags ask for (undefined: none asked for). They
 * choose one receiver, so they do not go with a receiver module, nor with one
 * another; a flag that configures one (--webhook-secret) chooses it too, and
 * the receiver's own check then asks for what is missing (--webhook: missing)
 * — unless runqueue fills it in from the receiver serve recorded.
 */
export function builtinFromFlags(f: BuiltinFlags, receiverModule: string | undefined): BuiltinReceiver | undefined {
  const given = (Object.keys(f) as Array<keyof BuiltinFlags>).filter((k) => f[k] !== undefined).map((k) => `--${k}`);
  if (given.length === 0) return undefined;
  if (receiverModule) {
    throw new CommandUsageError(`${given.join(', ')}: built-in receiver flags do not go with a receiver module (${receiverModule}); configure the module instead`);
  }
  const kinds = [
    f.maildir !== undefined && '--maildir',
    (f.webhook ?? f['webhook-secret'] ?? f['webhook-secret-file'] ?? f['webhook-timeout']) !== undefined && '--webhook',
    (f.relay ?? f['relay-timeout']) !== undefined && '--relay',
  ].filter((k): k is string => !!k);
  if (kinds.length > 1) throw new CommandUsageError(`${given.join(', ')}: choose one built-in receiver (${kinds.join(' or ')}), not several`);
  if (kinds[0] === '--maildir') return { kind: 'maildir', options: { root: f.maildir } };
  if (kinds[0] === '--webhook') {
    const file = f['webhook-secret-file'];
    if (file !== undefined && f['webhook-secret'] !== undefined) {
      throw new CommandUsageError('--webhook-secret, --webhook-secret-file: give the secret one way, not both');
    }
    const secret = file === undefined ? f['webhook-secret'] : secretFromFile(file, '--webhook-secret-file');
    // the file's path goes with the secret: serve records it in the queue instead of the secret
    return { kind: 'webhook', options: { url: f.webhook!, secret, timeout: f['webhook-timeout'] }, secretFile: file && resolve(file) };
  }
  const target = f.relay === undefined ? undefined : parseRelayTarget(f.relay);
  return { kind: 'relay', options: { host: target?.host!, port: target?.port, timeout: f['relay-timeout'] } };
}

/**
 * A webhook secret file: the secret is the file's text without its trailing
 * line end. Read once, when the command starts. `what` names the file in errors.
 */
export function secretFromFile(file: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CommandUsageError(`${what}: cannot read ${file}: ${(err as Error).message}`);
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret.length === 0) throw new CommandUsageError(`${what}: ${file} is empty`);
  return secret;
}

/** `--relay HOST`, `HOST:PORT` or `[IPv6]:PORT`. */
export function parseRelayTarget(v: string): { host: string; port?: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+))(?::(\d{1,5}))?$/.exec(v);
  if (!m || (m[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535))) {
    throw new CommandUsageError(`--relay: expected HOST or HOST:PORT (e.g. smtp.example.net:587 or [::1]:2525), got ${JSON.stringify(v)}`);
  }
  return { host: m[1] ?? m[2]!, port: m[3] === undefined ? undefined : Number(m[3]) };
}
