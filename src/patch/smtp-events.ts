/**
 * smtp-server's replies as events (src/core/events.ts `reply`), for metrics
 * by command and class: `_onCommand` notes the verb being answered, `send`
 * publishes each reply with it ('CONNECT' before any command: the greeting).
 * Wraps the methods as patched by ./smtp-server.ts (their originals are
 * fingerprinted there); nothing is done per reply while no one subscribes.
 */
import { events } from '../core/events.ts';

type Method = (this: any, ...args: any[]) => any;

/** Verbs counted by name; anything else (a typo, an attack, an AUTH continuation line) is 'OTHER'. */
const VERBS = new Set(['HELO', 'EHLO', 'LHLO', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'QUIT', 'VRFY', 'EXPN', 'HELP',
  'STARTTLS', 'AUTH', 'XCLIENT', 'XFORWARD', 'ETRN', 'TURN']);

const COMMAND = Symbol('smtp-receive.command');

function verbOf(command: unknown): string {
  const line = String(command ?? '');
  const space = line.indexOf(' ');
  const verb = (space < 0 ? line : line.slice(0, space)).toUpperCase();
  return VERBS.has(verb) ? verb : 'OTHER';
}

export function patchSmtpEvents(conn: Record<string, Method>): void {
  const onCommand = conn._onCommand!;
  const send = conn.send!;
  conn._onCommand = function (this: any, command: unknown, callback: unknown): unknown {
    // a continuation (AUTH's next line) answers the command that asked for it
    if (events.reply.hasSubscribers && !this._nextHandler) this[COMMAND] = verbOf(command);
    return onCommand.call(this, command, callback);
  };
  conn.send = function (this: any, code: number, data: unknown, context: unknown): unknown {
    if (events.reply.hasSubscribers) events.reply.publish({ command: this[COMMAND] ?? 'CONNECT', code });
    return send.call(this, code, data, context);
  };
}
