/**
 * Strict syntax where the RFCs are strict (a change to smtp-server 3.21.6,
 * applied by ./smtp-server.ts after its own changes; the fingerprints of the
 * original methods relied on are checked there):
 *
 * - A command line holding a NUL byte or a bare CR is refused with
 *   `500 5.5.2` (lines end at CRLF or LF; any CR left inside is bare).
 * - MAIL/RCPT parameters that are not offered in EHLO get `555 5.5.4`
 *   (RFC 5321 §4.1.1.11); smtp-server accepted any `FOO=BAR`.
 * - Quoted local parts (`<"john smith"@example.org>`) are accepted and kept
 *   exactly as sent, quotes and escapes included; smtp-server split the
 *   command at the space and answered 501.
 * - A non-ASCII address without the `SMTPUTF8` parameter on MAIL gets
 *   `553 5.6.7` (RFC 6531 §3.6); one that is not valid UTF-8, `501 5.5.2`.
 *
 * Each refusal goes to the server option `onRefused` (the daemon counts and
 * publishes it as a `rejected` event).
 */
import { isUtf8 } from 'node:buffer';
import { SmtpReply } from '../core/reply.ts';

type Method = (this: any, ...args: any[]) => any;

/** Where a refusal happened, for `rejected` events (a subset of RejectStage). */
export type RefusalStage = 'connect' | 'command' | 'auth' | 'mail' | 'rcpt' | 'data';

/** What the daemon passes to smtp-server to hear about the refusals of these patches. */
export interface RefusalListener {
  /** A refusal inside a session: `reason` is a fixed label (metrics count it). */
  onRefused?(session: unknown, stage: RefusalStage, reason: string, reply: SmtpReply): void;
}

/** The originals these changes call (checked by ./smtp-server.ts). */
export interface SyntaxOriginals {
  parseAddressCommand: Method;
  handlerMail: Method;
  handlerRcpt: Method;
}

export const SyntaxReplies = {
  badBytes: new SmtpReply(500, '5.5.2', 'Syntax error: NUL or bare CR in command'),
  badUtf8: new SmtpReply(501, '5.5.2', 'Syntax error: address is not valid UTF-8'),
  needsSmtpUtf8: new SmtpReply(553, '5.6.7', 'Non-ASCII address not permitted without SMTPUTF8'),
  tooBig: new SmtpReply(552, '5.3.4', 'Message size exceeds fixed maximum message size'),
} as const;

const CR = 13;
const NUL = 0;

// the parameters offered in EHLO, by the option that hides each (undefined: always offered)
const MAIL_PARAMS: Record<string, string | undefined> = {
  SIZE: undefined, BODY: 'hide8BITMIME', SMTPUTF8: 'hideSMTPUTF8', RET: 'hideDSN', ENVID: 'hideDSN', REQUIRETLS: 'hideREQUIRETLS',
};
const RCPT_PARAMS: Record<string, string | undefined> = { NOTIFY: 'hideDSN', ORCPT: 'hideDSN' };

// RFC 5321 quoted-string (qtextSMTP, quoted-pairSMTP), plus UTF-8 (RFC 6531) minus C1 controls and
// the invisible characters smtp-server refuses in any address
const QUOTED = /^"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e]|[^\x00-\x9f\u200b\u2060\ufeff])*"$/;
const ROUTE_THEN_QUOTE = /^(@[^\s,:@"]+(?:,@[^\s,:@"]+)*:)?"/;
const NON_ASCII = /[^\x00-\x7f]/;
const UNBALANCED = /:\s*<[^>]*"/;
const KEYWORD = /^[A-Za-z0-9][A-Za-z0-9-]{0,31}$/;

/** The path (between `<` and `>`) and parameters of a MAIL/RCPT command line, or undefined when malformed. */
export function splitAddressCommand(text: string): { path: string; start: number; end: number; params: string[] } | undefined {
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  let i = colon + 1;
  while (text[i] === ' ') i++;
  if (text[i] !== '<') return undefined;
  const start = i + 1;
  let quoted = false;
  for (i = start; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '\\') i++;
      else if (ch === '"') quoted = false;
    } else if (ch === '"') quoted = true;
    else if (ch === '>') break;
    else if (ch === '<') return undefined;
  }
  if (i >= text.length) return undefined;
  const rest = text.slice(i + 1);
  if (rest && !/^\s/.test(rest)) return undefined;
  const params = rest.trim();
  return { path: text.slice(start, i), start, end: i, params: params ? params.split(/\s+/) : [] };
}

/** A path whose local part is quoted: the (source route and) quoted part, and the rest from the `@`. */
export function quotedLocalPart(path: string): { route: string; quoted: string; rest: string } | 'invalid' | undefined {
  const m = ROUTE_THEN_QUOTE.exec(path);
  if (!m) return undefined;
  let i = m[0].length;
  for (; i < path.length; i++) {
    if (path[i] === '\\') i++;
    else if (path[i] === '"') break;
  }
  if (i >= path.length || path[i + 1] !== '@') return 'invalid';
  const quoted = path.slice(m[0].length - 1, i + 1);
  return QUOTED.test(quoted) ? { route: m[1] ?? '', quoted, rest: path.slice(i + 1) } : 'invalid';
}

function refused(conn: any, stage: RefusalStage, reason: string, reply: SmtpReply): void {
  const listener = conn._server.options as RefusalListener;
  if (listener.onRefused) listener.onRefused(conn.session, stage, reason, reply);
  conn.send(reply.code, reply.line);
}

/** The first parameter of a MAIL/RCPT command that is not offered, as the reply to it. */
function unknownParameter(conn: any, params: string[], offered: Record<string, string | undefined>, command: string): SmtpReply | undefined {
  const options = conn._server.options;
  for (const param of params) {
    const key = param.split('=', 1)[0]!.toUpperCase();
    const hiddenBy = offered[key];
    const known = key in offered ? hiddenBy === undefined || !options[hiddenBy]
      : key === 'AUTH' && command === 'MAIL' && conn._isSupported('AUTH') && options.authMethods?.length > 0;
    if (!known) {
      return new SmtpReply(555, '5.5.4', KEYWORD.test(key) ? `${command} parameter ${key} not recognized` : `${command} parameter not recognized`);
    }
  }
  return undefined;
}

/** The refusal (stage, reason, reply) of a MAIL/RCPT line that smtp-server's own checks let through, if any. */
function check(conn: any, command: 'MAIL' | 'RCPT', raw: Buffer | string): [string, SmtpReply] | undefined {
  const text = raw.toString();
  const parts = splitAddressCommand(text);
  if (!parts) return undefined;
  const unknown = unknownParameter(conn, parts.params, command === 'MAIL' ? MAIL_PARAMS : RCPT_PARAMS, command);
  if (unknown) return ['unknown-parameter', unknown];
  if (command === 'MAIL') {
    // a declared size over the limit (RFC 1870); smtp-server refuses it too, unreported
    const size = Number(conn._server.options.size) || 0;
    const declared = parts.params.find((p) => /^SIZE=\d{1,20}$/i.test(p));
    if (size && declared && Number(declared.slice(5)) > size) return ['too-big', SyntaxReplies.tooBig];
  }
  if (NON_ASCII.test(parts.path)) {
    if (typeof raw !== 'string' && !isUtf8(raw)) return ['bad-utf8', SyntaxReplies.badUtf8];
    const utf8 = command === 'MAIL'
      ? parts.params.some((p) => p.toUpperCase() === 'SMTPUTF8')
      : conn.session.envelope.smtpUtf8 === true;
    if (!utf8) return ['utf8-without-smtputf8', SyntaxReplies.needsSmtpUtf8];
  }
  return undefined;
}

export function patchSyntax(conn: Record<string, Method>, originals: SyntaxOriginals): void {
  const { parseAddressCommand, handlerMail, handlerRcpt } = originals;
  const onCommand = conn._onCommand!;

  // _onCommand: NUL or bare CR in a command line → 500 5.5.2 (not in the middle of an AUTH exchange,
  // not before the greeting, not during a TLS handshake: those keep smtp-server's handling)
  conn._onCommand = function (this: any, command: Buffer, callback?: () => void): unknown {
    if (this._ready && !this._upgrading && !this._nextHandler && !this._server._closeTimeout
      && Buffer.isBuffer(command) && (command.includes(NUL) || command.includes(CR))) {
      refused(this, 'command', 'bad-bytes', SyntaxReplies.badBytes);
      const next = callback || ((): boolean => false);
      setImmediate(() => this._whenWritable(next));
      return undefined;
    }
    return onCommand.call(this, command, callback);
  };

  // _parseAddressCommand: a quoted local part is parsed as a placeholder (smtp-server checks the domain
  // and parameters as usual), then put back exactly as sent. The last result is kept for the handler,
  // which parses the same line again.
  conn._parseAddressCommand = function (this: any, rawName: string, rawCommand: Buffer | string): unknown {
    const last = this._srParsed;
    if (last && last.command === rawCommand && last.name === rawName) {
      this._srParsed = undefined;
      return last.result;
    }
    const text = (rawCommand || '').toString();
    const parts = splitAddressCommand(text);
    const quoted = parts && quotedLocalPart(parts.path);
    // a double quote is in no address except around a quoted local part (not in atext, not in a domain)
    if (!parts ? UNBALANCED.test(text) : !quoted && parts.path.includes('"')) return false;
    if (!parts || !quoted) return parseAddressCommand.call(this, rawName, rawCommand);
    if (quoted === 'invalid') return false;
    const placeholder = `${text.slice(0, parts.start)}${quoted.route}q${quoted.rest}${text.slice(parts.end)}`;
    const parsed = parseAddressCommand.call(this, rawName, placeholder) as false | { address: string };
    if (!parsed || !parsed.address.startsWith('q@')) return parsed;
    parsed.address = quoted.quoted + parsed.address.slice(1);
    return parsed.address.length > 253 ? false : parsed;
  };

  // handler_MAIL / handler_RCPT: after smtp-server's syntax and sequence checks would pass, the stricter ones
  const strict = (name: 'MAIL' | 'RCPT', parseName: string, handler: Method): Method => function (this: any, command: Buffer, callback: () => void): unknown {
    const inSequence = name === 'MAIL' ? !this.session.envelope.mailFrom : !!this.session.envelope.mailFrom;
    if (inSequence) {
      const parsed = this._parseAddressCommand(parseName, command);
      this._srParsed = { name: parseName, command, result: parsed };
      const verdict = parsed && !parsed.duplicate ? check(this, name, command) : undefined;
      if (verdict) {
        this._srParsed = undefined;
        refused(this, name === 'MAIL' ? 'mail' : 'rcpt', verdict[0], verdict[1]);
        return callback();
      }
    }
    try {
      return handler.call(this, command, callback);
    } finally {
      this._srParsed = undefined;
    }
  };
  conn.handler_MAIL = strict('MAIL', 'mail from', handlerMail);
  conn.handler_RCPT = strict('RCPT', 'rcpt to', handlerRcpt);
}
