/**
 * What the queue keeps of the built-in receiver `serve` runs, so that a
 * `runqueue` with no daemon delivers with the same one: its kind and its
 * settings, never a secret. A secret is replaced by where it came from (the
 * file of --webhook-secret-file, read again by whoever delivers) or by the
 * name of the option that must be given again.
 */
import { resolve } from 'node:path';
import type { BuiltinReceiver } from './index.ts';

export interface RecordedBuiltin {
  kind: BuiltinReceiver['kind'];
  /** The options that are not secrets; paths absolute (the command's working directory is not serve's). */
  options: Record<string, unknown>;
  /** Options serve had that are left out (secrets, or not known to be harmless): they must be given again. */
  withheld: string[];
  /** The file serve read the webhook secret from: its path, not its text. */
  secretFile?: string;
}

/**
 * The options recorded as they are. An allow-list rather than a list of
 * secrets: an option added to a receiver later is withheld until it is put
 * here (webhook `headers` may carry an authorization, relay `auth` a password).
 */
const KEPT: Record<BuiltinReceiver['kind'], readonly string[]> = {
  maildir: ['root'],
  webhook: ['url', 'timeout'],
  relay: ['host', 'port', 'timeout', 'starttls', 'secure', 'name'],
  none: [],
};

export const BUILTIN_KINDS = Object.keys(KEPT) as Array<BuiltinReceiver['kind']>;

/** The record of a built-in receiver as serve runs it. */
export function recordBuiltin(spec: BuiltinReceiver): RecordedBuiltin {
  const given = ('options' in spec ? spec.options ?? {} : {}) as Record<string, unknown>;
  const options: Record<string, unknown> = {};
  const withheld: string[] = [];
  for (const [name, value] of Object.entries(given)) {
    if (value === undefined) continue;
    if (KEPT[spec.kind].includes(name)) options[name] = value;
    else withheld.push(name);
  }
  // MaildirReceiver resolves its root against the working directory: serve's, recorded as such
  if (spec.kind === 'maildir') options.root = resolve((given.root as string | undefined) ?? './mail');
  const record: RecordedBuiltin = { kind: spec.kind, options, withheld };
  if (spec.kind === 'webhook' && spec.secretFile !== undefined && given.secret !== undefined) record.secretFile = resolve(spec.secretFile);
  return record;
}

/** A stored value read back: the record, or undefined when it is not one this version understands. */
export function asRecordedBuiltin(v: unknown): RecordedBuiltin | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Partial<RecordedBuiltin>;
  if (!BUILTIN_KINDS.includes(r.kind as BuiltinReceiver['kind'])) return undefined;
  if (typeof r.options !== 'object' || r.options === null || !Array.isArray(r.withheld)) return undefined;
  if (r.secretFile !== undefined && typeof r.secretFile !== 'string') return undefined;
  return r as RecordedBuiltin;
}

/**
 * The receiver in a few words, for "using the built-in maildir receiver …: /path":
 * its name and its root, URL (no query string: it may hold a token) or smarthost.
 */
export function describeBuiltin(r: Pick<RecordedBuiltin, 'kind' | 'options'>): { name: string; where: string } {
  const o = r.options;
  switch (r.kind) {
    case 'maildir':
      return { name: 'maildir receiver', where: String(o.root) };
    case 'webhook': {
      let where = String(o.url);
      try {
        const url = new URL(where);
        where = `${url.origin}${url.pathname}`;
      } catch { /* shown as given: the receiver says what is wrong with it */ }
      return { name: 'webhook receiver', where };
    }
    case 'relay': {
      const host = String(o.host);
      return { name: 'relay receiver', where: `${host.includes(':') ? `[${host}]` : host}:${typeof o.port === 'number' ? o.port : 25}` };
    }
    default:
      return { name: 'receiver', where: 'the base Receiver, which delivers nothing' };
  }
}
