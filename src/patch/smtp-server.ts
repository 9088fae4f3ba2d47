/**
 * smtp-server 3.21.6, patched at run time (imported by the server before it
 * creates an SMTPServer). Each change replaces or wraps one method on
 * SMTPConnection.prototype, SMTPServer.prototype or SMTPStream.prototype of
 * the copy smtp-receive resolves; nothing on disk is modified and no install
 * script is needed. Before touching anything it checks the installed version
 * and the source of every method it replaces or wraps (a fingerprint of the
 * code as loaded): anything else — another version, a modified copy — throws a
 * PatchError at import, so the daemon never runs on an unpatched smtp-server.
 *
 * The changes:
 * - The greeting pause: smtp-server holds every session for a hard-coded
 *   100 ms before the greeting and refuses a client that talks first with 421;
 *   the `earlyTalkerDelay` option (ms, default 100) sets it, and with 0 the
 *   greeting goes out at once and a command sent before it is answered after it.
 * - A reply text that starts with its own enhanced status code keeps it (not
 *   doubled: "550 5.7.1 relaying denied", not "550 5.1.1 5.7.1 …").
 * - Connection ids from a counter behind a random per-process prefix instead of
 *   10 random bytes and a BigInt per connection.
 * - The end of DATA found with indexOf instead of a byte-by-byte loop (./smtp-stream.ts).
 * - Replies, and refusals for too many clients, published as events (./smtp-events.ts).
 * - Strict MAIL/RCPT syntax (./smtp-syntax.ts) and per-session and per-client limits (./smtp-limits.ts).
 * - PROXY protocol v1 and v2 from the load balancers of the `proxyFrom` option (./smtp-proxy.ts).
 * - The marker `SMTPServer.smtpReceivePatch` (= SMTP_SERVER_PATCH), which
 *   startServer() checks.
 */
import { randomBytes } from 'node:crypto';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { events } from '../core/events.ts';
import { patchSmtpEvents } from './smtp-events.ts';
import { patchProxy } from './smtp-proxy.ts';
import { feedDataStream } from './smtp-stream.ts';
import { patchLimitReplies, patchLimits } from './smtp-limits.ts';
import { patchSyntax } from './smtp-syntax.ts';
import { PatchError, checkVersion, installed, originalMethod } from './verify.ts';

/** The only smtp-server version these patches fit (package.json pins it). */
export const SMTP_SERVER_VERSION = '3.21.6';
/**
 * The value of `SMTPServer.smtpReceivePatch` once patched. 1 was the
 * patch-package patch of earlier versions; 2 is this run-time patch.
 */
export const SMTP_SERVER_PATCH = 2;

/** Fingerprints (./verify.ts) of the 3.21.6 methods that are replaced or wrapped. */
const ORIGINAL = {
  connection: {
    init: '1265a7d7ca8f5510',
    connectionReady: '361a2b1de88fbf67',
    send: 'c33568c0111a58b2',
    _getEnhancedStatusCode: 'c0488b13c4262983', // send's context false = no enhanced code
    _onCommand: '41c8a1b7a32aa314',
    _setListeners: 'cf07ab6f47db09ac', // pipes the socket to the parser at once (smtp-proxy.ts peeks after it)
    // relied on by ./smtp-syntax.ts and ./smtp-limits.ts
    _parseAddressCommand: '9f368803e4fdff15',
    handler_MAIL: 'a40618dd2e16f0fa',
    handler_RCPT: 'ef2acd7214eaa466',
    handler_DATA: '9eceecf35f56cecd',
    _createParser: '15ca8c360137e06a',
    _onTimeout: 'f21be62dd64b1dec',
    _isSupported: 'dbbb9a8918cf7201',
  },
  server: {
    _handleProxy: 'b52456c48b0458fe', _expectsProxyHeader: 'b900129fbb5a986c',
    // smtp-proxy.ts: the guard before a session, and connect() creating it synchronously
    _acceptSocket: 'f4c69396f94c5c50', connect: '9818ea13a1c36459',
  },
  stream: { _feedDataStream: '9d8b903f9a3a6354', _commandTooLong: '220e7cdf6e6dda23' },
} as const;

// a reply text that carries its own enhanced status code
const OWN_ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

// connection ids: unique within the process, never repeated across restarts in practice
const CONNECTION_ID_PREFIX = BigInt('0x' + randomBytes(5).toString('hex')).toString(32).padStart(8, '0');
let connectionCounter = 0;
const nextConnectionId = (): string => CONNECTION_ID_PREFIX + (++connectionCounter).toString(32).padStart(8, '0');

/** The classes of one loaded smtp-server, and where it is installed. */
export interface SmtpServerModule {
  dir: string;
  version: string;
  SMTPServer: abstract new (...args: never[]) => unknown;
  SMTPConnection: abstract new (...args: never[]) => unknown;
  SMTPStream: abstract new (...args: never[]) => unknown;
}

type Method = (this: any, ...args: any[]) => any;
type Marked = { smtpReceivePatch?: unknown };

/**
 * Patches one loaded smtp-server; throws a PatchError, having changed nothing,
 * when it is not exactly the code the patch was written against. Patching the
 * same smtp-server twice (two copies of smtp-receive in one process, e.g. src/
 * and dist/) is a no-op.
 */
export function patchSmtpServer(target: SmtpServerModule): void {
  const marked = target.SMTPServer as unknown as Marked;
  if (marked.smtpReceivePatch === SMTP_SERVER_PATCH) return;
  checkVersion('smtp-server', target, SMTP_SERVER_VERSION);
  const conn = target.SMTPConnection.prototype as Record<string, Method>;
  const server = target.SMTPServer.prototype as Record<string, Method>;
  const stream = target.SMTPStream.prototype as Record<string, Method>;
  const original = (owner: string, proto: object, name: string, fp: string): Method =>
    originalMethod('smtp-server', owner, proto, name, fp) as Method;
  // every check before any change: a refusal leaves smtp-server as it was
  const connectionReady = original('SMTPConnection', conn, 'connectionReady', ORIGINAL.connection.connectionReady);
  const send = original('SMTPConnection', conn, 'send', ORIGINAL.connection.send);
  const onCommand = original('SMTPConnection', conn, '_onCommand', ORIGINAL.connection._onCommand);
  const handleProxy = original('SMTPServer', server, '_handleProxy', ORIGINAL.server._handleProxy);
  original('SMTPConnection', conn, 'init', ORIGINAL.connection.init);
  original('SMTPConnection', conn, '_getEnhancedStatusCode', ORIGINAL.connection._getEnhancedStatusCode);
  original('SMTPServer', server, '_expectsProxyHeader', ORIGINAL.server._expectsProxyHeader);
  original('SMTPStream', stream, '_feedDataStream', ORIGINAL.stream._feedDataStream);
  original('SMTPConnection', conn, '_setListeners', ORIGINAL.connection._setListeners);
  original('SMTPServer', server, '_acceptSocket', ORIGINAL.server._acceptSocket);
  original('SMTPServer', server, 'connect', ORIGINAL.server.connect);
  const c = ORIGINAL.connection;
  const syntax = {
    parseAddressCommand: original('SMTPConnection', conn, '_parseAddressCommand', c._parseAddressCommand),
    handlerMail: original('SMTPConnection', conn, 'handler_MAIL', c.handler_MAIL),
    handlerRcpt: original('SMTPConnection', conn, 'handler_RCPT', c.handler_RCPT),
  };
  const limits = {
    createParser: original('SMTPConnection', conn, '_createParser', c._createParser),
    handlerData: original('SMTPConnection', conn, 'handler_DATA', c.handler_DATA),
    onTimeout: original('SMTPConnection', conn, '_onTimeout', c._onTimeout),
  };
  original('SMTPConnection', conn, '_isSupported', c._isSupported);
  original('SMTPStream', stream, '_commandTooLong', ORIGINAL.stream._commandTooLong);
  if (marked.smtpReceivePatch !== undefined) {
    throw new PatchError('smtp-server', `it already carries another patch marker (smtpReceivePatch = ${String(marked.smtpReceivePatch)})`);
  }

  // init: the greeting pause is the earlyTalkerDelay option (replaces upstream's init)
  conn.init = function init(this: any): void {
    this._setListeners(() => {
      // Check that connection limit is not exceeded
      if (this._server.options.maxClients && this._server.connections.size > this._server.options.maxClients) {
        if (events.connectionRefused.hasSubscribers) events.connectionRefused.publish({ reason: 'max-clients', remoteAddress: this.remoteAddress });
        return this.send(421, this.name + ' Too many connected clients, try again in a moment', false);
      }
      // the delay for detecting early talkers: the earlyTalkerDelay option (ms, default 100). With 0
      // there is no early talker check: the greeting goes out at once and a command sent before it waits for it
      const earlyTalkerDelay = this._server.options.earlyTalkerDelay === undefined ? 100 : Number(this._server.options.earlyTalkerDelay);
      if (!(earlyTalkerDelay > 0)) {
        return this.connectionReady();
      }
      const readyTimer = setTimeout(() => this.connectionReady(), earlyTalkerDelay);
      // Unref timer so connection init delay doesn't prevent process exit
      readyTimer.unref();
    });
  };

  // connectionReady: once the greeting is out (and the caller's `next` ran), a command that arrived before it
  conn.connectionReady = function (this: any, next?: unknown): unknown {
    return connectionReady.call(this, () => {
      if (typeof next === 'function') next();
      if (this._pendingCommand) {
        const pending = this._pendingCommand;
        this._pendingCommand = false;
        pending();
      }
    });
  };

  // _onCommand: with earlyTalkerDelay 0, a command before the greeting waits for it instead of a 421.
  // Upstream checks, in order: a TLS upgrade in progress, a server shutting down, then !_ready (the 421).
  conn._onCommand = function (this: any, command: unknown, callback: unknown): unknown {
    if (!this._ready && !this._upgrading && !this._server._closeTimeout && this._server.options.earlyTalkerDelay === 0) {
      this._pendingCommand = () => this._onCommand(command, callback);
      return undefined;
    }
    return onCommand.call(this, command, callback);
  };

  // send: the context only selects the enhanced status code; false means none
  conn.send = function (this: any, code: number, data: unknown, context: unknown): unknown {
    return send.call(this, code, data, typeof data === 'string' && OWN_ENHANCED_CODE.test(data) ? false : context);
  };

  // _handleProxy: connection ids from a counter. Without a PROXY header (smtp-receive never sets
  // useProxy) this is upstream's code with the new id; with one, upstream's code, then the new id.
  server._handleProxy = function (this: any, socket: any, callback: (err: unknown, options?: any) => void): void {
    if (!this._expectsProxyHeader(socket)) {
      const socketOptions: { id: string; ignore?: boolean } = { id: nextConnectionId() };
      socketOptions.ignore = this.options.ignoredHosts && this.options.ignoredHosts.includes(socket.remoteAddress);
      setImmediate(() => callback(null, socketOptions));
      return;
    }
    handleProxy.call(this, socket, (err: unknown, options?: { id?: string }) => {
      if (options) options.id = nextConnectionId();
      callback(err, options);
    });
  };

  stream._feedDataStream = feedDataStream;
  // the syntax and limits around commands inside the reply events (a refusal of theirs is published with
  // the command it answers), the limits' reply changes outside them (published as sent)
  patchSyntax(conn, syntax);
  patchLimits(conn, limits);
  patchSmtpEvents(conn); // replies as events (./smtp-events.ts)
  patchLimitReplies(conn);
  patchProxy(server, conn, nextConnectionId);
  marked.smtpReceivePatch = SMTP_SERVER_PATCH;
}

patchSmtpServer({ ...installed('smtp-server'), SMTPServer, SMTPConnection, SMTPStream });
