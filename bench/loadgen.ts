/**
 * The load generator: N concurrent SMTP sessions sending M messages over raw
 * sockets. Every reply is checked; a message counts only on its 250 after the
 * data. Messages and commands are pre-built buffers shared by all sessions, and
 * replies are parsed from the received bytes without making strings, so the
 * generator stays cheap on the cores it shares with the server.
 *
 * Library: `runLoad(options)`. CLI: `node --import tsx bench/loadgen-cli.ts --port P …`.
 */
import { connect, type Socket } from 'node:net';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { startProbes } from './probe.ts';
import { ProcSampler, type ProcStats } from './procstat.ts';
import { summarize, type Stats } from './stats.ts';

export type { Stats };

export interface LoadOptions {
  host: string;
  port: number;
  /** Concurrent sessions. */
  sessions: number;
  /** Messages in all. */
  messages: number;
  /** Message size in bytes (headers + body, before the final `.`). */
  size: number;
  /** Recipients per message. */
  rcpts: number;
  /** Send MAIL, RCPT… and DATA in one write (RFC 2920) instead of one at a time. */
  pipelining: boolean;
  /** Messages per connection (1: a new connection for every message). */
  perConnection: number;
  /** Recipients are `userN@rcptDomain`. */
  rcptDomain: string;
  /** Whole run's time limit, ms: whatever is unfinished then is an error. */
  timeoutMs: number;
  /** Server pid to sample from /proc (CPU, RSS); `serverTree` adds its descendants. */
  serverPid?: number;
  serverTree?: boolean;
  /** Every this many ms, a fresh connection measures time to the 220 greeting. */
  probeIntervalMs?: number;
  /** The message to send (ending with `.\r\n`) instead of one built from `size` (e.g. DKIM-signed: bench/auth.ts). */
  message?: Buffer;
  /** Called with each 250 reply line after the data (e.g. to collect queue ids). */
  onAccepted?: (line: string) => void;
  /** Ends the run early, like the time limit (what is unfinished counts as failed). */
  signal?: AbortSignal;
  /**
   * End to end: called after the last reply; resolves once the server has
   * delivered every message it accepted, with the number still undelivered when
   * it gave up (0: all delivered). The run's time, msg/s, CPU and memory then
   * run to that moment: first connect → last delivery.
   */
  untilDelivered?: () => Promise<number>;
}

export interface LoadResult {
  accepted: number;
  failed: number;
  /** The run's time, s: first connect → last reply, or → last delivery with `untilDelivered` (end to end). */
  seconds: number;
  /** accepted ÷ seconds. */
  msgPerSec: number;
  /** First connect → last reply, s, and accepted ÷ it (the same as seconds and msgPerSec when receiving only). */
  receiveSeconds: number;
  receiveMsgPerSec: number;
  /** End to end: last reply → the server's queue empty, ms, and what was still queued when the wait ended. */
  drainMs?: number;
  undelivered?: number;
  /** Message bytes accepted per second, in 10^6 bytes. */
  mbPerSec: number;
  /** End of DATA (`.\r\n` handed to the kernel) → 250, ms. */
  latencyMs: Stats;
  /** MAIL FROM written → 354 after DATA (3 + recipients round trips, or 1 with pipelining), ms. */
  envelopeMs: Stats;
  /** Connect → 220 greeting of the load's own connections, ms. */
  greetingMs: Stats;
  /** Connect → 220 of the probe connections, ms (with probeIntervalMs). */
  probeGreetingMs?: Stats & { errors: number };
  /** Errors by phase and reply code (`RCPT 451`, `conn ECONNRESET`, `timeout`). */
  errors: Record<string, number>;
  warnings: Record<string, number>;
  connections: number;
  /** Server CPU seconds per 1,000 accepted messages, peak RSS … (with serverPid). */
  server?: ProcStats & { cpuSecPer1k: number };
  /** This generator's own event-loop delay and CPU (high values mean the client was the limit). */
  clientLagMs: { p99: number; max: number };
  clientCpuSecPer1k?: number;
}

/** A message of exactly `size` bytes (CRLF lines, none starting with '.'), then `.\r\n`. */
export function buildMessage(size: number, to: string): Buffer {
  const head = `From: <bench@bench.invalid>\r\nTo: <${to}>\r\nSubject: bench\r\n`
    + `Message-ID: <bench@bench.invalid>\r\nDate: ${new Date().toUTCString()}\r\n\r\n`;
  const buf = Buffer.alloc(Math.max(size, head.length + 2) + 3, 'x');
  const headEnd = buf.write(head, 0, 'latin1');
  const end = buf.length - 3; // where `.\r\n` goes
  // CRLF at the end and every 78 bytes back from it: lines of 76 characters (the first may be shorter)
  for (let p = end - 2; p >= headEnd; p -= 78) {
    buf[p] = 13;
    buf[p + 1] = 10;
  }
  buf.write('.\r\n', end, 'latin1');
  return buf;
}

const enum Phase { Greeting, Ehlo, Envelope, Data, Quit, Done }

class Run {
  readonly latency: Float64Array;
  readonly greeting: Float64Array;
  readonly envelopeTimes: Float64Array;
  nEnvelope = 0;
  nLatency = 0;
  nGreeting = 0;
  claimed = 0;
  accepted = 0;
  failed = 0;
  connections = 0;
  active = 0;
  readonly errors: Record<string, number> = {};
  readonly warnings: Record<string, number> = {};
  readonly sockets = new Set<Socket>();
  readonly ehlo = Buffer.from('EHLO loadgen.bench.invalid\r\n');
  readonly mail = Buffer.from('MAIL FROM:<bench@bench.invalid>\r\n');
  readonly rcpt: Buffer[] = [];
  readonly dataCmd = Buffer.from('DATA\r\n');
  readonly quit = Buffer.from('QUIT\r\n');
  readonly envelope: Buffer;
  readonly message: Buffer;
  stopped = false;
  finish!: () => void;

  constructor(readonly o: LoadOptions) {
    this.latency = new Float64Array(o.messages);
    this.greeting = new Float64Array(o.messages + o.sessions);
    this.envelopeTimes = new Float64Array(o.messages);
    for (let i = 1; i <= o.rcpts; i++) this.rcpt.push(Buffer.from(`RCPT TO:<user${i}@${o.rcptDomain}>\r\n`));
    this.envelope = Buffer.concat([this.mail, ...this.rcpt, this.dataCmd]);
    this.message = o.message ?? buildMessage(o.size, `user1@${o.rcptDomain}`);
  }

  claim(): boolean {
    if (this.stopped || this.claimed >= this.o.messages) return false;
    this.claimed++;
    return true;
  }

  error(key: string): void {
    this.errors[key] = (this.errors[key] ?? 0) + 1;
  }

  /** A session: one connection after another until no message is left. */
  startSession(): void {
    if (!this.claim()) {
      if (--this.active === 0) this.finish();
      return;
    }
    new Connection(this);
  }
}

class Connection {
  private readonly s: Socket;
  private phase = Phase.Greeting;
  private step = 0; // replies seen in the current phase
  private inFlight = true; // a claimed message not yet answered
  private sent = 0; // messages finished on this connection
  private pipelining: boolean;
  private partial: Buffer | undefined;
  private t0 = performance.now();
  private dataPending = false;
  private readonly written = (): void => {
    if (!this.dataPending) return;
    this.t0 = performance.now();
    this.dataPending = false;
  };

  constructor(private readonly run: Run) {
    this.pipelining = run.o.pipelining;
    run.connections++;
    this.s = connect({ host: run.o.host, port: run.o.port });
    run.sockets.add(this.s);
    this.s.setNoDelay(true);
    this.s.setTimeout(60_000, () => this.fail('timeout'));
    this.s.on('data', (chunk: Buffer) => this.onData(chunk));
    this.s.on('error', (err: NodeJS.ErrnoException) => this.fail(`conn ${err.code ?? err.message}`));
    this.s.on('close', () => this.fail('conn closed'));
  }

  private fail(key: string): void {
    if (this.phase === Phase.Done) return;
    const run = this.run;
    if (run.stopped) { // the deadline passed: runLoad counts what is unfinished
      this.phase = Phase.Done;
      return;
    }
    if (this.inFlight) {
      run.error(key);
      run.failed++;
      this.inFlight = false;
    } else if (this.phase !== Phase.Quit) {
      run.error(key);
    }
    this.close();
  }

  private close(): void {
    this.phase = Phase.Done;
    this.run.sockets.delete(this.s);
    this.s.destroy();
    this.run.startSession();
  }

  private onData(chunk: Buffer): void {
    let buf = chunk;
    if (this.partial) {
      buf = Buffer.concat([this.partial, chunk]);
      this.partial = undefined;
    }
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl < 0) break;
      if (nl - start >= 4 && buf[start + 3] === 45) { // "250-…": a continuation line
        if (this.phase === Phase.Ehlo && buf.indexOf('PIPELINING', start, 'latin1') === start + 4) this.step = 1;
      } else if (nl - start >= 4) {
        this.onReply((buf[start]! - 48) * 100 + (buf[start + 1]! - 48) * 10 + (buf[start + 2]! - 48), buf, start, nl);
        if (this.phase === Phase.Done) return;
      }
      start = nl + 1;
    }
    if (start < buf.length) this.partial = buf.subarray(start);
  }

  private unexpected(code: number, what: string): void {
    this.fail(`${what} ${code}`);
  }

  private onReply(code: number, buf: Buffer, start: number, end: number): void {
    const run = this.run;
    switch (this.phase) {
      case Phase.Greeting:
        if (code !== 220) return this.unexpected(code, 'greeting');
        run.greeting[run.nGreeting++] = performance.now() - this.t0;
        this.phase = Phase.Ehlo;
        this.step = 0;
        this.s.write(run.ehlo);
        return;
      case Phase.Ehlo:
        if (code !== 250) return this.unexpected(code, 'EHLO');
        if (buf.indexOf('PIPELINING', start, 'latin1') === start + 4) this.step = 1;
        if (this.pipelining && this.step === 0) {
          run.warnings['no PIPELINING advertised'] = (run.warnings['no PIPELINING advertised'] ?? 0) + 1;
          this.pipelining = false;
        }
        return this.startMessage();
      case Phase.Envelope: {
        const r = run.o.rcpts;
        const expected = this.step === r + 1 ? 354 : 250;
        if (code !== expected) return this.unexpected(code, this.step === 0 ? 'MAIL' : this.step <= r ? 'RCPT' : 'DATA');
        this.step++;
        if (this.step <= r + 1) {
          if (!this.pipelining) this.s.write(this.step <= r ? run.rcpt[this.step - 1]! : run.dataCmd);
          return;
        }
        this.phase = Phase.Data;
        run.envelopeTimes[run.nEnvelope++] = performance.now() - this.t0;
        // the end of DATA: now if the write went to the kernel at once, else when its callback runs
        this.dataPending = true;
        this.s.write(run.message, this.written);
        if (this.s.writableLength === 0) {
          this.t0 = performance.now();
          this.dataPending = false;
        }
        return;
      }
      case Phase.Data: {
        const now = performance.now();
        // (a reply read before the write's callback ran: the data had reached the kernel just now)
        const latency = this.dataPending ? 0 : now - this.t0;
        this.dataPending = false;
        if (code !== 250) return this.unexpected(code, 'end-of-data');
        run.latency[run.nLatency++] = latency;
        run.accepted++;
        run.o.onAccepted?.(buf.toString('latin1', start, end).trimEnd());
        this.inFlight = false;
        this.sent++;
        if (this.sent < run.o.perConnection && run.claim()) {
          this.inFlight = true;
          return this.startMessage();
        }
        this.phase = Phase.Quit;
        this.s.write(run.quit);
        return;
      }
      case Phase.Quit:
        if (code !== 221) run.error(`QUIT ${code}`);
        this.phase = Phase.Done;
        run.sockets.delete(this.s);
        this.s.end();
        run.startSession();
        return;
    }
  }

  private startMessage(): void {
    this.phase = Phase.Envelope;
    this.step = 0;
    this.t0 = performance.now();
    this.s.write(this.pipelining ? this.run.envelope : this.run.mail);
  }
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const run = new Run(o);
  const lag = monitorEventLoopDelay({ resolution: 10 });
  const sampler = o.serverPid ? new ProcSampler(o.serverPid, o.serverTree) : undefined;
  const probes = o.probeIntervalMs ? startProbes(o) : undefined;
  lag.enable();
  sampler?.start();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      clearTimeout(deadline);
      if (run.stopped) return;
      run.stopped = true;
      const left = o.messages - run.accepted - run.failed;
      if (left > 0) run.errors.timeout = (run.errors.timeout ?? 0) + left;
      run.failed += left;
      for (const s of run.sockets) s.destroy();
      resolve();
    };
    const deadline = setTimeout(stop, o.timeoutMs);
    o.signal?.addEventListener('abort', stop, { once: true });
    run.finish = () => {
      clearTimeout(deadline);
      o.signal?.removeEventListener('abort', stop);
      resolve();
    };
    run.active = Math.min(o.sessions, o.messages);
    if (run.active === 0) run.finish();
    for (let i = Math.min(o.sessions, o.messages); i > 0; i--) run.startSession();
  });
  const replied = performance.now();
  const cpu = process.cpuUsage(cpu0);
  lag.disable();
  const undelivered = o.untilDelivered ? await o.untilDelivered() : undefined;
  const end = performance.now();
  if (undelivered) run.errors['not delivered'] = undelivered;
  const seconds = (end - t0) / 1000;
  const receiveSeconds = (replied - t0) / 1000;
  const server = sampler?.stop();
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  return {
    accepted: run.accepted,
    failed: run.failed,
    seconds: r2(seconds),
    msgPerSec: r2(run.accepted / seconds),
    receiveSeconds: r2(receiveSeconds),
    receiveMsgPerSec: r2(run.accepted / receiveSeconds),
    ...(o.untilDelivered ? { drainMs: r2(end - replied), undelivered } : {}),
    mbPerSec: r2((run.accepted * o.size) / seconds / 1e6),
    latencyMs: summarize(run.latency, run.nLatency),
    envelopeMs: summarize(run.envelopeTimes, run.nEnvelope),
    greetingMs: summarize(run.greeting, run.nGreeting),
    probeGreetingMs: probes?.stop(),
    errors: run.errors,
    warnings: run.warnings,
    connections: run.connections,
    server: server && { ...server, cpuSecPer1k: run.accepted ? r2((server.cpuSeconds * 1000) / run.accepted) : 0 },
    clientLagMs: { p99: r2(lag.percentile(99) / 1e6), max: r2(lag.max / 1e6) },
    clientCpuSecPer1k: run.accepted ? r2((cpu.user + cpu.system) / 1e3 / run.accepted) : 0,
  };
}
