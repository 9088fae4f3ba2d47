/**
 * Syslog output: the same lines as stderr, as RFC 5424 messages —
 * `<PRI>1 TIMESTAMP HOSTNAME smtp-receive PID MSGID - TEXT`, MSGID being the
 * event (queued, rejected, delivered …) — over UDP (`--syslog HOST:PORT`) or
 * to a Unix datagram socket (the local daemon's /dev/log). syslog-client
 * formats the messages and sends the UDP ones; Node has no Unix datagram
 * sockets, so those go through node-unix-socket (a prebuilt N-API addon, no
 * install script), loaded only when asked for. Sending never blocks: both
 * are non-blocking sockets, and a daemon that cannot keep up loses lines
 * (counted) rather than stalling the receiver.
 */
import { lookup } from 'node:dns/promises';
import { stat } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { createClient, Transport, type Client, type MessageOptions } from 'syslog-client';
import { describeSyslogTarget, type SyslogTarget } from './syslog-target.ts';
import { PINO_METADATA } from './text.ts';

/** pino's numeric levels → syslog severities. */
const SEVERITY: Record<number, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };

/** Unix datagrams waiting for a busy daemon; past it, lines are dropped. */
const MAX_PENDING = 1000;

export interface SyslogOptions {
  /** RFC 5424 facility code. */
  facility: number;
  /** APP-NAME. @default 'smtp-receive' */
  appName?: string;
  /** Told once when sending starts failing (and when lines are dropped): not through the log, which includes syslog. */
  onTrouble(text: string): void;
}

/** The part of node-unix-socket's DgramSocket used here. */
interface UnixDgram {
  sendTo(buf: Buffer, offset: number, length: number, path: string, cb?: (err?: Error) => void): void;
  on(event: 'error', f: (err: Error) => void): unknown;
  close(): void;
}

export class SyslogStream {
  readonly [PINO_METADATA] = true;
  lastLevel = 30;
  lastMsg: string | undefined;
  lastObj: { event?: unknown } | undefined;
  private failing = false;
  private pending = 0;
  private dropped = 0;
  private readonly where: string;

  private constructor(
    private readonly client: Client,
    private readonly base: MessageOptions,
    private readonly o: SyslogOptions,
    target: SyslogTarget,
    private readonly unix?: { socket: UnixDgram; path: string },
  ) {
    this.where = describeSyslogTarget(target);
    client.on('error', (err: Error) => this.trouble(err));
  }

  /** Opens the target: a host name is looked up once, a socket path must exist. */
  static async open(target: SyslogTarget, o: SyslogOptions): Promise<SyslogStream> {
    const base: MessageOptions = {
      facility: o.facility, rfc3164: false, appName: o.appName ?? 'smtp-receive', syslogHostname: osHostname() || '-',
    };
    if (target.kind === 'udp') {
      const { address } = await lookup(target.host).catch((err: Error) => {
        throw new Error(`syslog: cannot resolve ${target.host}: ${err.message}`);
      });
      const client = createClient(address, { ...base, port: target.port, transport: Transport.Udp });
      return new SyslogStream(client, base, o, target);
    }
    const info = await stat(target.path).catch(() => undefined);
    if (!info?.isSocket()) throw new Error(`syslog: ${target.path} is not a socket (no syslog daemon listening there?)`);
    let socket: UnixDgram;
    try {
      const mod = await import('node-unix-socket') as unknown as { DgramSocket?: new () => UnixDgram; default?: { DgramSocket: new () => UnixDgram } };
      const Dgram = mod.DgramSocket ?? mod.default!.DgramSocket;
      socket = new Dgram();
    } catch (err) {
      throw new Error(`syslog: Unix datagram sockets (${target.path}) need node-unix-socket's prebuilt addon, which did not load on this platform `
        + `(${(err as Error).message}); send to a syslog daemon over UDP with --syslog HOST:PORT instead`);
    }
    // formats only: never connects (syslog-client has no Unix datagram transport)
    const formatter = createClient('127.0.0.1', base);
    const stream = new SyslogStream(formatter, base, o, target, { socket, path: target.path });
    socket.on('error', (err) => stream.trouble(err));
    return stream;
  }

  write(_json: string): void {
    const event = this.lastObj?.event;
    const options: MessageOptions = {
      ...this.base, severity: SEVERITY[this.lastLevel] ?? 6, msgid: typeof event === 'string' ? event : '-',
    };
    const text = this.lastMsg ?? '';
    if (this.pending >= MAX_PENDING) {
      if (this.dropped++ === 0) this.o.onTrouble(`syslog: ${this.where} is not keeping up: dropping lines (more than ${MAX_PENDING} waiting)`);
      return;
    }
    this.pending++;
    const sent = (err?: Error | null): void => {
      this.pending--;
      if (err) this.trouble(err);
      else this.ok();
      if (this.pending === 0) this.drained?.();
    };
    if (!this.unix) {
      this.client.log(text, options, sent);
      return;
    }
    const buf = this.client.buildFormattedMessage(text, options);
    try {
      this.unix.socket.sendTo(buf, 0, buf.length, this.unix.path, sent);
    } catch (err) {
      sent(err as Error);
    }
  }

  private trouble(err: Error): void {
    if (this.failing) return;
    this.failing = true;
    this.o.onTrouble(`syslog: cannot send to ${this.where}: ${err.message} (told once until it works again)`);
  }

  private ok(): void {
    this.failing = false;
    if (this.dropped) {
      this.o.onTrouble(`syslog: ${this.dropped} line(s) were dropped while ${this.where} was not keeping up`);
      this.dropped = 0;
    }
  }

  private drained: (() => void) | undefined;

  /** Closes the socket once the lines written are sent (waiting at most `graceMs`). */
  async close(graceMs = 1000): Promise<void> {
    if (this.pending > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((done) => {
        this.drained = done;
        timer = setTimeout(done, graceMs);
      });
      clearTimeout(timer);
    }
    if (this.unix) this.unix.socket.close();
    else this.client.close();
  }
}
