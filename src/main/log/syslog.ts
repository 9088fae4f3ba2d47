/**
 * Syslog output: the same lines as stderr, as RFC 5424 messages —
 * `<PRI>1 TIMESTAMP HOSTNAME smtp-receive PID MSGID - TEXT`, MSGID being the
 * event (queued, rejected, delivered …) — over UDP (`--syslog HOST:PORT`) or
 * to a Unix datagram socket (the local daemon's /dev/log). syslog-client
 * formats the messages and sends the UDP ones. Node has no Unix datagram
 * sockets, and the npm addons that add them ship binaries for some platforms
 * only (their lockfile entries break `npm ci` elsewhere), so those lines go
 * through util-linux's `logger` (Debian's essential bsdutils), one child
 * process for the daemon's life, one line per message on its stdin; logger
 * writes the RFC 5424 header (its MSGID is '-': logger sets one per process).
 * Sending never blocks: a daemon that cannot keep up loses lines (counted)
 * rather than stalling the receiver.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { lookup } from 'node:dns/promises';
import { stat } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { createClient, Transport, type Client, type MessageOptions } from 'syslog-client';
import { describeSyslogTarget, type SyslogTarget } from './syslog-target.ts';
import { PINO_METADATA } from './text.ts';

/** pino's numeric levels → syslog severities. */
const SEVERITY: Record<number, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 };

/** Datagrams (or bytes to logger) waiting for a busy daemon; past it, lines are dropped. */
const MAX_PENDING = 1000;
const MAX_PIPED = 1024 * 1024;

export interface SyslogOptions {
  /** RFC 5424 facility code. */
  facility: number;
  /** APP-NAME. @default 'smtp-receive' */
  appName?: string;
  /** Told once when sending starts failing (and when lines are dropped): not through the log, which includes syslog. */
  onTrouble(text: string): void;
}


/** util-linux's logger, fed on its stdin. */
type LoggerProcess = ChildProcessByStdio<Writable, null, Readable>;

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
    private readonly unix?: LoggerProcess,
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
    const logger = spawn('logger', [
      '--socket', target.path, '--socket-errors=on', '--rfc5424=notq', '--prio-prefix',
      '--tag', base.appName!, `--id=${process.pid}`,
    ], { stdio: ['pipe', 'ignore', 'pipe'] });
    await new Promise<void>((ok, fail) => {
      logger.once('spawn', ok);
      logger.once('error', (err: NodeJS.ErrnoException) => fail(new Error(`syslog: sending to ${target.path} needs util-linux's logger, `
        + `which did not start (${err.code === 'ENOENT' ? 'not installed' : err.message}); send to a syslog daemon over UDP with --syslog HOST:PORT instead`)));
    });
    // formats only: never connects (syslog-client has no Unix datagram transport)
    const formatter = createClient('127.0.0.1', base);
    const stream = new SyslogStream(formatter, base, o, target, logger);
    logger.on('error', (err) => stream.trouble(err));
    logger.stdin.on('error', (err) => stream.trouble(err));
    logger.stderr.setEncoding('utf8').on('data', (text: string) => stream.trouble(new Error(text.trim())));
    logger.on('exit', (code, signal) => { if (!stream.closing) stream.trouble(new Error(`logger exited (${signal ?? code})`)); });
    return stream;
  }

  write(_json: string): void {
    const event = this.lastObj?.event;
    const severity = SEVERITY[this.lastLevel] ?? 6;
    const text = this.lastMsg ?? '';
    if (this.unix) {
      // logger takes one message a line, its priority in front: <PRI>TEXT
      if (this.unix.stdin.writableLength > MAX_PIPED) {
        if (this.dropped++ === 0) this.o.onTrouble(`syslog: ${this.where} is not keeping up: dropping lines (more than ${MAX_PIPED} bytes waiting)`);
        return;
      }
      this.unix.stdin.write(`<${(this.base.facility ?? 2) * 8 + severity}>${text.replace(/[\r\n]+/g, ' ')}\n`);
      return;
    }
    if (this.pending >= MAX_PENDING) {
      if (this.dropped++ === 0) this.o.onTrouble(`syslog: ${this.where} is not keeping up: dropping lines (more than ${MAX_PENDING} waiting)`);
      return;
    }
    this.pending++;
    const options: MessageOptions = { ...this.base, severity, msgid: typeof event === 'string' ? event : '-' };
    this.client.log(text, options, (err?: Error | null) => {
      this.pending--;
      if (err) this.trouble(err);
      else this.ok();
      if (this.pending === 0) this.drained?.();
    });
  }


  closing = false;

  trouble(err: Error): void {
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
    this.closing = true;
    if (this.unix) {
      const logger = this.unix;
      // logger sends what it has read, then exits at the end of its input
      await new Promise<void>((done) => {
        const timer = setTimeout(() => { logger.kill(); done(); }, graceMs);
        logger.once('exit', () => { clearTimeout(timer); done(); });
        logger.stdin.end();
      });
    } else this.client.close();
  }
}
