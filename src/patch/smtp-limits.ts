/**
 * Per-session and per-client limits (a change to smtp-server 3.21.6, applied
 * by ./smtp-server.ts after its own changes; the fingerprints of the original
 * methods relied on are checked there). Each limit is a server option; 0 or
 * absent turns it off. Every hit goes to the server options `onRefused` /
 * `onClientRefused` with a fixed reason label.
 *
 * - `maxClientsPerIp`: sessions open at once from one client (its address, or
 *   the key the server option `clientKey` gives it: an IPv6 prefix); one
 *   more gets `421 4.7.0` before the reverse lookup and `onConnect`.
 * - `maxCommands`: commands in one session; the next gets `421 4.7.0`.
 * - `maxBadCommands`: commands answered 500–504 or 555 in one session; the
 *   last of them gets `421 4.7.0` instead (smtp-server's own count of
 *   unknown commands, fixed at 10, is taken over).
 * - `dataTimeout` (ms): from the 354 to the final dot, whatever the client
 *   trickles meanwhile (slowloris); then `421 4.4.2`, and the half-received
 *   message is dropped.
 * - smtp-server's `maxCommandLength`: the reply to a longer line becomes
 *   `421 4.7.0 Line too long` (the parser cannot go on after it).
 * - smtp-server's idle timeout (`socketTimeout`): the reply becomes
 *   `421 4.4.2 Idle timeout` and is reported.
 * - `closeAfterReply(session, …)`: the daemon's way to end a session right
 *   after the reply it is about to send (too many failed AUTHs, ../main/auth.ts):
 *   that reply goes out as it is, then a `421`, which closes the connection
 *   before the parser can run anything the client pipelined behind it.
 */
import { SmtpReply } from '../core/reply.ts';
import type { RefusalListener, RefusalStage } from './smtp-syntax.ts';

type Method = (this: any, ...args: any[]) => any;

/** The server options of these limits. */
export interface LimitOptions extends RefusalListener {
  maxClientsPerIp?: number;
  maxCommands?: number;
  maxBadCommands?: number;
  dataTimeout?: number;
  /** The sessions per client, shared by the servers given it (each listener); else one per server. */
  clientCounts?: Map<string, number>;
  /**
   * The client a session counts against, from its address (default: the address). A key with a
   * `/` is a range in CIDR form (`2001:db8:1:2::/64`), which the refusal names.
   */
  clientKey?(remoteAddress: string): string;
  /** A connection refused before its session began: `reason` is a fixed label; `range` the key when it is a range. */
  onClientRefused?(remoteAddress: string, reason: string, reply: SmtpReply, range?: string): void;
}

/** The originals these changes call (checked by ./smtp-server.ts). */
export interface LimitOriginals {
  createParser: Method;
  handlerData: Method;
  onTimeout: Method;
}

export const LimitReplies = {
  perClient: new SmtpReply(421, '4.7.0', 'Too many connections from your address, try again later'),
  /** The same counted per range: "your address" would mislead a client with one connection from its own. */
  perRange: (range: string): SmtpReply => new SmtpReply(421, '4.7.0', `Too many connections from ${range}, try again later`),
  tooManyCommands: new SmtpReply(421, '4.7.0', 'Too many commands in one session, closing connection'),
  tooManyBadCommands: new SmtpReply(421, '4.7.0', 'Too many bad commands, closing connection'),
  lineTooLong: new SmtpReply(421, '4.7.0', 'Line too long, closing connection'),
  idleTimeout: new SmtpReply(421, '4.4.2', 'Idle timeout, closing connection'),
  dataTimeout: new SmtpReply(421, '4.4.2', 'DATA took too long, closing connection'),
} as const;

/** A session to end after its next reply: the 421 to end it with, and the refusal's labels. */
interface CloseAfter {
  stage: RefusalStage;
  reason: string;
  reply: SmtpReply;
}
// keyed by smtp-server's session object (the connection keeps one for its whole life, STARTTLS included)
const closeAfter = new WeakMap<object, CloseAfter>();

/**
 * Ends the session of `session` right after the next reply it sends: that reply as it is, then `reply`
 * (a 421), which closes the connection and is reported (`onRefused`) when it is sent. Call it just before
 * handing smtp-server the reply (its callbacks send synchronously); a connection that is closed or
 * closing by then (a limit's own 421, a client that left) gets no 421 and reports nothing more.
 */
export function closeAfterReply(session: object, stage: RefusalStage, reason: string, reply: SmtpReply): void {
  closeAfter.set(session, { stage, reason, reply });
}

// the replies that count as a bad command: syntax, unknown or out-of-sequence commands, unknown parameters
const BAD = new Set([500, 501, 502, 503, 504, 555]);

function report(conn: any, stage: RefusalStage, reason: string, reply: SmtpReply): void {
  const options = conn._server.options as LimitOptions;
  if (options.onRefused) options.onRefused(conn.session, stage, reason, reply);
}

/** Sessions per client address: the option's map, or one on the server object. */
function perClient(server: any): Map<string, number> {
  return (server.options as LimitOptions).clientCounts ?? (server._srPerClient ??= new Map<string, number>());
}

export function patchLimits(conn: Record<string, Method>, originals: LimitOriginals): void {
  const { createParser, handlerData, onTimeout } = originals;
  const connectionReady = conn.connectionReady!;
  const onCommand = conn._onCommand!;

  // connectionReady: count the session against its client address first (before rDNS and onConnect)
  conn.connectionReady = function (this: any, next?: unknown): unknown {
    const options = this._server.options as LimitOptions;
    const limit = options.maxClientsPerIp;
    const socket = this._socket;
    if (limit && !this._srCounted && !socket.destroyed) {
      const counts = perClient(this._server);
      const address = String(this.remoteAddress);
      const key = options.clientKey ? options.clientKey(address) : address;
      const n = (counts.get(key) ?? 0) + 1;
      counts.set(key, n);
      this._srCounted = true;
      socket.once('close', () => {
        const left = (counts.get(key) ?? 1) - 1;
        if (left > 0) counts.set(key, left);
        else counts.delete(key);
      });
      if (n > limit) {
        const range = key.includes('/') ? key : undefined;
        const reply = range ? LimitReplies.perRange(range) : LimitReplies.perClient;
        if (options.onClientRefused) options.onClientRefused(address, 'per-client', reply, range);
        this.send(421, reply.line);
        return undefined;
      }
    }
    return connectionReady.call(this, next);
  };

  // _onCommand: commands per session; smtp-server's own unknown-command count never reaches its 10
  conn._onCommand = function (this: any, command: unknown, callback: unknown): unknown {
    if (this._ready && !this._upgrading) {
      this._unrecognizedCommands = 0;
      const max = (this._server.options as LimitOptions).maxCommands;
      this._srCommands = (this._srCommands ?? 0) + 1;
      if (max && this._srCommands > max) {
        report(this, 'command', 'too-many-commands', LimitReplies.tooManyCommands);
        this.send(421, LimitReplies.tooManyCommands.line);
        return undefined;
      }
    }
    return onCommand.call(this, command, callback);
  };

  // _onTimeout: marks the idle timeout's 421 for send (patchLimitReplies)
  conn._onTimeout = function (this: any): unknown {
    this._srIdle = true;
    try {
      return onTimeout.call(this);
    } finally {
      this._srIdle = false;
    }
  };

  // _createParser: a line over maxCommandLength gets its own reply
  conn._createParser = function (this: any): unknown {
    const parser = createParser.call(this);
    parser.removeAllListeners('error');
    parser.on('error', (err: Error) => {
      if (err && err.message === 'Command line too long') {
        report(this, 'command', 'line-too-long', LimitReplies.lineTooLong);
        this.send(421, LimitReplies.lineTooLong.line);
        return;
      }
      this.send(421, 'Error: ' + (err && err.message));
    });
    return parser;
  };

  // handler_DATA: the total DATA time, from the 354 to the final dot
  conn.handler_DATA = function (this: any, command: unknown, callback: unknown): unknown {
    const result = handlerData.call(this, command, callback);
    const ms = (this._server.options as LimitOptions).dataTimeout;
    const parser = this._parser;
    const stream = this._dataStream;
    if (ms && parser && parser._dataMode && stream) {
      const timer = setTimeout(() => {
        if (!parser._dataMode || this._dataStream !== stream || this._closing || this._closed) return;
        report(this, 'data', 'data-timeout', LimitReplies.dataTimeout);
        this.send(421, LimitReplies.dataTimeout.line);
      }, ms);
      timer.unref();
      const clear = (): void => clearTimeout(timer);
      stream.once('end', clear);
      stream.once('close', clear);
    }
    return result;
  };
}

/**
 * The reply side of the limits, applied after the reply events (./smtp-events.ts) so that a reply
 * changed here is published as sent, while the command side (patchLimits) goes before them, so that
 * a refusal of its own is published with the command it answers.
 */
export function patchLimitReplies(conn: Record<string, Method>): void {
  const send = conn.send!;
  // send: the bad-command count (its last one is answered with the 421), and the idle timeout's reply
  const limited = function (this: any, code: number, data: unknown, context: unknown): unknown {
    if (this._srIdle && code === 421) {
      this._srIdle = false;
      report(this, 'command', 'idle-timeout', LimitReplies.idleTimeout);
      return send.call(this, 421, LimitReplies.idleTimeout.line, false);
    }
    if (BAD.has(code)) {
      const max = (this._server.options as LimitOptions).maxBadCommands;
      this._srBad = (this._srBad ?? 0) + 1;
      if (max && this._srBad >= max) {
        report(this, 'command', 'too-many-bad-commands', LimitReplies.tooManyBadCommands);
        return send.call(this, 421, LimitReplies.tooManyBadCommands.line, false);
      }
    }
    return send.call(this, code, data, context);
  };
  // send: then the 421 of closeAfterReply, when one waits (a 421 of the reply's own closes already)
  conn.send = function (this: any, code: number, data: unknown, context: unknown): unknown {
    const close = this.session ? closeAfter.get(this.session) : undefined;
    if (close === undefined || code === 421) return limited.call(this, code, data, context);
    closeAfter.delete(this.session);
    const result = limited.call(this, code, data, context);
    // closing or closed already (a limit's own 421, the client gone during authFailureDelay): nothing to add
    if (!this._closing && !this._closed) {
      report(this, close.stage, close.reason, close.reply);
      send.call(this, 421, close.reply.line, false);
    }
    return result;
  };
}
