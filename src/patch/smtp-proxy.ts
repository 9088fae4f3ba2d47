/**
 * The PROXY protocol, versions 1 and 2, for smtp-server (which reads v1 only,
 * from the addresses of its `useProxy` option). Called by patchSmtpServer()
 * (./smtp-server.ts) once its own changes are in; it wraps the methods as
 * that left them.
 *
 * - `_expectsProxyHeader`: the server option `proxyFrom`, a function of the
 *   peer address (smtp-receive's --proxy-from), decides which peers are load
 *   balancers; upstream's `useProxy` list still works without it.
 * - `_handleProxy`: a balancer's connection must start with a v1 or v2 header
 *   (./proxy-header.ts), which may come in several packets, within the server
 *   option `proxyTimeout` (ms); the session then sees the client's address and
 *   port (and the address it connected to) instead of the balancer's. A v2
 *   LOCAL header (a health check), v1 UNKNOWN or an unspecified address keep
 *   the connection's own. No header, a bad one or none in time: a 421 and the
 *   connection is closed. smtp-server's own guard (`_acceptSocket`: maxClients
 *   for sockets before their session, socketTimeout) stays around this.
 * - `_onCommand`: a peer that is not a listed balancer and opens with a PROXY
 *   header (either version, seen in its first bytes) is answered 421 and
 *   disconnected (once greeted; during a --greet-pause at once), never served
 *   as if it had said something else.
 * Each refusal publishes `connectionRefused` with reason 'proxy'.
 */
import type { Socket } from 'node:net';
import { events } from '../core/events.ts';
import { log } from '../core/log.ts';
import { looksLikeProxyHeader, parseProxyHeader } from './proxy-header.ts';

type Method = (this: any, ...args: any[]) => any;
type Callback = (err: Error | null, options?: SocketOptions) => void;

interface SocketOptions {
  id: string;
  ignore?: boolean;
  remoteAddress?: string;
  remotePort?: number;
  localAddress?: string;
  localPort?: number;
}

/** How long a listed balancer has to send its header, when the server option `proxyTimeout` is not set (ms). */
export const PROXY_TIMEOUT_DEFAULT = 5000;
/** After a refusal, how long the reply may take to flush before the socket is destroyed (ms). */
const REFUSE_LINGER = 1000;

/** Sockets of peers that are not listed balancers whose first bytes looked like a PROXY header. */
const unlistedHeader = new WeakSet<Socket>();

function refused(remoteAddress: string | undefined, reply: string, why: string): void {
  log.info('PROXY: connection from %s refused: %s', remoteAddress ?? '?', why);
  if (events.connectionRefused.hasSubscribers) {
    events.connectionRefused.publish({ reason: 'proxy', remoteAddress: remoteAddress ?? '', reply });
  }
}

/**
 * Wraps the current `_expectsProxyHeader`, `_handleProxy` (smtp-server.ts's,
 * which gives connection ids) and `_onCommand` of one smtp-server.
 */
export function patchProxy(server: Record<string, Method>, conn: Record<string, Method>, nextConnectionId: () => string): void {
  const expectsHeader = server._expectsProxyHeader!;
  const handleProxy = server._handleProxy!;
  const onCommand = conn._onCommand!;

  server._expectsProxyHeader = function (this: any, socket: Socket): boolean {
    const trusted = this.options.proxyFrom;
    return typeof trusted === 'function' ? trusted(socket.remoteAddress) === true : expectsHeader.call(this, socket);
  };

  server._handleProxy = function (this: any, socket: Socket, callback: Callback): void {
    if (!this._expectsProxyHeader(socket)) {
      // on an implicit TLS listener the first bytes are the TLS handshake's (a header there fails it)
      const implicitTls = this.options.secure && !this.options.needsUpgrade && !this.options.secured;
      handleProxy.call(this, socket, (err: Error | null, options?: SocketOptions) => {
        callback(err, options);
        // connect() piped the socket to the session's parser just now: look at the first bytes before it does
        if (!err && !implicitTls) {
          socket.prependOnceListener('data', (chunk: Buffer) => {
            if (looksLikeProxyHeader(chunk)) unlistedHeader.add(socket);
          });
        }
      });
      return;
    }
    readHeader(this, socket, callback);
  };

  conn._onCommand = function (this: any, command: Buffer, callback: unknown): unknown {
    // the first command once greeted (with no greeting pause, one sent before the greeting comes back here
    // when it is; with a pause, a header before the greeting is refused as this, not as an early talker)
    if (!this._proxyChecked && (this._ready || this._server.options.earlyTalkerDelay !== 0)) {
      this._proxyChecked = true;
      if (unlistedHeader.has(this._socket)) {
        const text = '4.7.0 PROXY protocol header not accepted from this address';
        refused(this.remoteAddress, `421 ${text}`, 'a PROXY header from an address not in --proxy-from');
        return this.send(421, text);
      }
    }
    return onCommand.call(this, command, callback);
  };

  /** Reads a listed balancer's header, then calls back with the client's addresses (or an error, the socket closing). */
  function readHeader(smtp: any, socket: Socket, callback: Callback): void {
    const options: SocketOptions = { id: nextConnectionId() };
    const name: string = smtp.options.name || 'smtp-receive';
    const timeoutMs = Number(smtp.options.proxyTimeout ?? PROXY_TIMEOUT_DEFAULT);
    let buf: Buffer = Buffer.alloc(0);
    let finished = false;

    const done = (err: Error | null): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.removeListener('readable', onReadable);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClosed);
      socket.removeListener('end', onClosed);
      if (err) {
        // nothing else closes it now: smtp-server drops its guard when called back
        socket.on('error', () => {});
        if (socket.writableEnded) setTimeout(() => socket.destroy(), REFUSE_LINGER).unref();
        else socket.destroy();
      }
      callback(err, err ? undefined : options);
    };
    const refuse = (text: string, why: string): void => {
      const reply = `421 ${text}`;
      refused(socket.remoteAddress, reply, why);
      try {
        socket.end(`${reply}\r\n`);
      } catch { /* already gone */ }
      done(new Error(why));
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (!finished && (chunk = socket.read() as Buffer | null) !== null) {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        const header = parseProxyHeader(buf);
        if (header.state === 'more') continue;
        if (header.state === 'bad') {
          refuse(`4.7.0 ${name} Expected a PROXY protocol header`, `from a --proxy-from address: ${header.reason}`);
          return;
        }
        if (header.source) {
          options.remoteAddress = header.source.address;
          options.remotePort = header.source.port;
          options.localAddress = header.destination?.address;
          options.localPort = header.destination?.port;
        }
        options.ignore = smtp.options.ignoredHosts?.includes(options.remoteAddress ?? socket.remoteAddress);
        if (buf.length > header.length) socket.unshift(buf.subarray(header.length));
        if (log.enabled('debug')) {
          log.debug('%s PROXY v%d from %s: client %s', options.id, header.version, socket.remoteAddress,
            header.source ? `${header.source.address}:${header.source.port}` : '(the connection\'s own address)');
        }
        done(null);
        return;
      }
    };
    const onError = (err: Error): void => done(err);
    const onClosed = (): void => done(new Error('the connection closed before its PROXY header'));
    const timer = setTimeout(() => {
      refuse(`4.4.2 ${name} No PROXY protocol header in time`, `from a --proxy-from address: no PROXY header within ${timeoutMs} ms`);
    }, timeoutMs);
    timer.unref();
    socket.on('readable', onReadable);
    socket.on('error', onError);
    socket.on('close', onClosed);
    socket.on('end', onClosed);
  }
}
