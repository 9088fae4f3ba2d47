/**
 * A raw-socket SMTP client for tests, in layers: connect → greeted → after
 * EHLO → in a transaction, so each test states only what it is about.
 */
import { connect, type Socket } from 'node:net';

export interface Reply {
  code: number;
  /** The full reply text, all lines joined with \n (without the CRLFs). */
  text: string;
  lines: string[];
}

export class RawClient {
  private buf = '';
  private waiters: Array<() => void> = [];
  private closed = false;
  readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => { this.buf += d; this.wake(); });
    socket.on('close', () => { this.closed = true; this.wake(); });
    socket.on('error', () => { this.closed = true; this.wake(); });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Connects without reading the greeting (from `localAddress`, e.g. 127.0.0.2, when given). */
  static connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host, localAddress }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** A client on a socket that is already connected (a TLS socket after STARTTLS, or an implicit-TLS one). */
  static over(socket: Socket): RawClient {
    return new RawClient(socket);
  }

  /** Connects and reads the 220 greeting. */
  static async greeted(port: number, host?: string): Promise<RawClient> {
    const c = await RawClient.connect(port, host);
    const g = await c.read();
    if (g.code !== 220) throw new Error(`expected 220 greeting, got ${g.text}`);
    return c;
  }

  /** Greeted and EHLO done. */
  static async ready(port: number, helo = 'client.test'): Promise<RawClient> {
    const c = await RawClient.greeted(port);
    const r = await c.command(`EHLO ${helo}`);
    if (r.code !== 250) throw new Error(`EHLO: ${r.text}`);
    return c;
  }

  /** Reads one (possibly multi-line) reply. */
  async read(timeoutMs = 10_000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.take();
      if (r) return r;
      if (this.closed) throw new Error(`connection closed while waiting for a reply (buffer: ${JSON.stringify(this.buf)})`);
      if (Date.now() > deadline) throw new Error(`no reply within ${timeoutMs} ms (buffer: ${JSON.stringify(this.buf)})`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => { clearTimeout(t); res(); });
      });
    }
  }

  private take(): Reply | undefined {
    const lines: string[] = [];
    let pos = 0;
    for (;;) {
      const eol = this.buf.indexOf('\r\n', pos);
      if (eol < 0) return undefined;
      const line = this.buf.slice(pos, eol);
      lines.push(line);
      pos = eol + 2;
      if (line.length < 4 || line[3] === ' ') {
        this.buf = this.buf.slice(pos);
        return { code: Number(line.slice(0, 3)), text: lines.join('\n'), lines };
      }
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async command(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.read();
  }

  /** MAIL FROM + RCPT TOs; returns the replies. */
  async envelope(from: string, to: string[], mailParams = ''): Promise<Reply[]> {
    const out = [await this.command(`MAIL FROM:<${from}>${mailParams ? ` ${mailParams}` : ''}`)];
    for (const r of to) out.push(await this.command(`RCPT TO:<${r}>`));
    return out;
  }

  /** DATA with an already dot-stuffed body that ends with CRLF; returns the final reply. */
  async data(stuffedBody: string | Buffer): Promise<Reply> {
    const r = await this.command('DATA');
    if (r.code !== 354) return r;
    this.write(stuffedBody);
    this.write('.\r\n');
    return this.read(30_000);
  }

  /** Sends `commands` in one write (PIPELINING) and reads one reply per command, in order. */
  async pipelined(commands: string[]): Promise<Reply[]> {
    this.write(commands.map((c) => `${c}\r\n`).join(''));
    const out: Reply[] = [];
    for (let i = 0; i < commands.length; i++) out.push(await this.read());
    return out;
  }

  /** Reads every reply until the server closes the connection (bounded by `timeoutMs` overall). */
  async readUntilClosed(timeoutMs = 10_000): Promise<Reply[]> {
    const deadline = Date.now() + timeoutMs;
    const out: Reply[] = [];
    for (let i = 0; i < 1000; i++) {
      try {
        out.push(await this.read(Math.max(1, deadline - Date.now())));
      } catch (err) {
        if (this.closed) return out;
        throw err;
      }
    }
    throw new Error('more than 1000 replies');
  }

  /** A whole transaction; returns the reply to the end of DATA (or the first refusal). */
  async send(from: string, to: string[], stuffedBody: string | Buffer): Promise<Reply> {
    for (const r of await this.envelope(from, to)) if (r.code >= 400) return r;
    return this.data(stuffedBody);
  }

  async quit(): Promise<void> {
    if (!this.closed) {
      try { await this.command('QUIT'); } catch { /* already gone */ }
    }
    this.socket.destroy();
  }

  /** Resolves when the server has closed the connection. */
  async closedByServer(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.closed;
  }
}

/** Dot-stuffs a body for DATA (lines starting with '.' get another '.'). */
export function dotStuff(body: string): string {
  return body.replace(/(^|\r\n)\./g, '$1..');
}

/** Dot-stuffs a binary body byte for byte (latin1 keeps every byte as one char). */
export function dotStuffBytes(body: Buffer): Buffer {
  return Buffer.from(dotStuff(body.toString('latin1')), 'latin1');
}

/** Is this the `250 2.0.0 Ok: queued as <ID>` reply? */
export function isQueued(r: Reply): boolean {
  return r.code === 250 && /queued as [0-9A-Z]+/.test(r.text);
}

/** Extracts the queue id from `250 2.0.0 Ok: queued as <ID>`. */
export function queuedId(r: Reply): string {
  const m = /queued as ([0-9A-Z]+)/.exec(r.text);
  if (r.code !== 250 || !m) throw new Error(`expected a 250 queued reply, got ${r.text}`);
  return m[1]!;
}
