/**
 * Ident (RFC 1413): the server asks the client's identd who owns the
 * connection. Each test runs its own identd on 127.0.0.1, so it controls the
 * answer and when it comes.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { parseIdent } from '../src/main/lookup.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { storedMessage } from './helpers/queue.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

interface Query {
  /** The SMTP client's port (on the identd's host), as queried. */
  rport: number;
  /** The SMTP server's port, as queried. */
  lport: number;
  socket: Socket;
}

/** A tiny identd: `answer` decides per query what to reply (undefined: say nothing, keep the connection). */
class Identd {
  readonly queries: Query[] = [];
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(answer: (q: Query) => Promise<string | undefined> | string | undefined) {
    this.server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
      socket.setEncoding('latin1');
      let buf = '';
      socket.on('data', (d: string) => {
        buf += d;
        const m = /^\s*(\d+)\s*,\s*(\d+)\s*\r?\n/.exec(buf);
        if (!m) return;
        const q: Query = { rport: Number(m[1]), lport: Number(m[2]), socket };
        this.queries.push(q);
        void Promise.resolve(answer(q)).then((line) => {
          if (line !== undefined && !socket.destroyed) socket.end(`${line}\r\n`);
        });
      });
    });
  }

  static async start(answer: (q: Query) => Promise<string | undefined> | string | undefined): Promise<Identd> {
    const d = new Identd(answer);
    await new Promise<void>((ok) => d.server.listen(0, '127.0.0.1', ok));
    return d;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }
}

const userid = (user: string) => (q: Query): string => `${q.rport} , ${q.lport} : USERID : UNIX : ${user}`;

/** Starts what a test needs and stops all of it afterwards, even on failure. */
function resources() {
  const stops: Array<() => Promise<void>> = [];
  after(async () => { for (const stop of stops.reverse()) await stop(); });
  return {
    async identd(answer: Parameters<typeof Identd.start>[0]): Promise<Identd> {
      const d = await Identd.start(answer);
      stops.push(() => d.stop());
      return d;
    },
    async server(identPort: number, identTimeout: number): Promise<TestServer> {
      const s = await startTestServer({ ident: true, identPort, identTimeout });
      stops.push(() => s.stop());
      return s;
    },
  };
}

describe('ident against a test identd', () => {
  const use = resources();

  it('stores the user name the identd gives, in msg.ident and the Received header', async () => {
    const identd = await use.identd(userid('alice'));
    const server = await use.server(identd.port, 1000);
    const c = await RawClient.ready(server.port);
    const id = queuedId(await c.send('a@example.org', ['b@localhost'], 'Subject: who\r\n\r\nme\r\n'));
    const clientPort = c.socket.localPort;
    await c.quit();
    // the query names the client's port first, then ours (RFC 1413)
    assert.deepEqual(identd.queries.map((q) => [q.rport, q.lport]), [[clientPort, server.port]]);
    const stored = (await storedMessage(server.store, id))!;
    assert.equal(stored.record.msg.ident, 'alice');
    assert.match(stored.bytes.toString('latin1'), /^Received: from client\.test \(alice@\[127\.0\.0\.1\]\)\r\n/);
  });

  it('an identd that never answers: the session is served after identTimeout, with ident ""', async () => {
    const identd = await use.identd(() => undefined);
    const server = await use.server(identd.port, 300);
    const c = await RawClient.ready(server.port);
    const id = queuedId(await c.send('a@example.org', ['b@localhost'], 'Subject: hung\r\n\r\nx\r\n'));
    await c.quit();
    assert.equal(identd.queries.length, 1, 'the identd was asked');
    const stored = (await storedMessage(server.store, id))!;
    assert.equal(stored.record.msg.ident, '');
    assert.match(stored.bytes.toString('latin1'), /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n/);
  });

  it('an identd that refuses (ERROR) or answers for other ports gives ""', async () => {
    const identd = await use.identd((q) => (identd.queries.length === 1
      ? `${q.rport} , ${q.lport} : ERROR : NO-USER`
      : `${q.rport + 1} , ${q.lport} : USERID : UNIX : mallory`));
    const server = await use.server(identd.port, 1000);
    for (let i = 0; i < 2; i++) {
      const c = await RawClient.ready(server.port);
      const id = queuedId(await c.send('a@example.org', ['b@localhost'], 'x\r\n'));
      await c.quit();
      assert.equal(server.store.get(id)!.msg.ident, '');
    }
    assert.equal(identd.queries.length, 2);
  });

  it('no identd listening: ident "" and the session is served', async () => {
    const identd = await use.identd(() => undefined);
    const port = identd.port;
    await identd.stop(); // nothing listens on `port` now
    const server = await use.server(port, 1000);
    const c = await RawClient.ready(server.port);
    const id = queuedId(await c.send('a@example.org', ['b@localhost'], 'x\r\n'));
    await c.quit();
    assert.equal(server.store.get(id)!.msg.ident, '');
  });

  it('a slow identd holds only its own session: another one completes a transaction meanwhile', async () => {
    let firstPort: (port: number) => void;
    const firstKnown = new Promise<number>((r) => { firstPort = r; });
    let release!: () => void;
    const released = new Promise<void>((r) => { release = r; });
    const identd = await use.identd(async (q) => {
      // the first client's query is answered only once the second client has its 250
      if (q.rport === await firstKnown) {
        await released;
        return userid('alice')(q);
      }
      return userid('bob')(q);
    });
    const server = await use.server(identd.port, 20_000);

    const first = await RawClient.connect(server.port); // not greeted yet: its ident query is pending
    firstPort!(first.socket.localPort!);
    try {
      const second = await RawClient.ready(server.port);
      const id2 = queuedId(await second.send('a@example.org', ['b@localhost'], 'second\r\n'));
      await second.quit();
      assert.equal(server.store.get(id2)!.msg.ident, 'bob');
      // the first session is still waiting for its identd: nothing has been sent to it
      const early = await first.read(50).catch(() => undefined);
      assert.equal(early, undefined, 'no greeting before the ident answer');

      release();
      const greeting = await first.read();
      assert.equal(greeting.code, 220, greeting.text);
      assert.equal((await first.command('EHLO first.test')).code, 250);
      const id1 = queuedId(await first.send('a@example.org', ['b@localhost'], 'first\r\n'));
      assert.equal(server.store.get(id1)!.msg.ident, 'alice');
    } finally {
      release();
      await first.quit();
    }
  });
});

describe('parseIdent', () => {
  it('takes the user id of a USERID answer for the queried ports', () => {
    assert.equal(parseIdent('6191, 23 : USERID : UNIX : stjohns', 6191, 23), 'stjohns');
    assert.equal(parseIdent('6191 , 23 : USERID : UNIX : stjohns\r\n', 6191, 23), 'stjohns');
    assert.equal(parseIdent('6191,23:USERID:UNIX:stjohns', 6191, 23), 'stjohns');
    assert.equal(parseIdent('6191, 23 : USERID : OTHER , UTF-8 : x_y.z', 6191, 23), 'x_y.z');
    // RFC 1413: the user id is everything after the third colon
    assert.equal(parseIdent('6191, 23 : USERID : UNIX : a:b', 6191, 23), 'a:b');
  });

  it('gives "" for other ports', () => {
    assert.equal(parseIdent('6192, 23 : USERID : UNIX : x', 6191, 23), '');
    assert.equal(parseIdent('6191, 24 : USERID : UNIX : x', 6191, 23), '');
    assert.equal(parseIdent('23, 6191 : USERID : UNIX : x', 6191, 23), '');
    assert.equal(parseIdent(', : USERID : UNIX : x', 6191, 23), '');
    // port numbers are decimal digits (RFC 1413: 1*5digit), exactly two of them
    assert.equal(parseIdent('0x182F, 0x17 : USERID : UNIX : x', 6191, 23), '');
    assert.equal(parseIdent('6191.0, 23e0 : USERID : UNIX : x', 6191, 23), '');
    assert.equal(parseIdent('6191, 23, 99 : USERID : UNIX : x', 6191, 23), '');
  });

  it('gives "" for ERROR replies', () => {
    for (const e of ['NO-USER', 'HIDDEN-USER', 'UNKNOWN-ERROR', 'INVALID-PORT']) {
      assert.equal(parseIdent(`6191, 23 : ERROR : ${e}`, 6191, 23), '', e);
    }
  });

  it('gives "" for malformed lines and unsafe user ids', () => {
    for (const line of ['', 'garbage', '6191, 23', '6191, 23 : USERID', '6191, 23 : USERID : UNIX',
      '6191, 23 : USERID : UNIX : ', '6191, 23 : USERID : UNIX : two words', '6191, 23 : USERID : UNIX : a\tb',
      '6191, 23 : USERID : UNIX : ' + 'x'.repeat(65), '6191, 23 : USERID : UNIX : évil',
      '6191, 23 : USERID : UNIX : x\r\nReceived: forged', 'x, y : USERID : UNIX : z']) {
      assert.equal(parseIdent(line, 6191, 23), '', JSON.stringify(line));
    }
  });
});
