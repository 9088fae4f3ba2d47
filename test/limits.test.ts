/**
 * The limits on what a client controls (src/patch/smtp-limits.ts, serve
 * options and flags): each gets its reply and a `rejected` (or
 * `connectionRefused`) event with its fixed reason, and the server keeps
 * serving everyone else meanwhile.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { on, type ConnectionRefusedEvent, type RejectedEvent } from '../src/core/events.ts';
import { parseServeArgs } from '../src/main/cli.ts';
import { OptionError, resolveOptions } from '../src/main/options.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { parseExposition, scrape, valueOf } from './helpers/metrics.ts';
import { RawClient, isQueued } from './helpers/smtp.ts';

/** Collects `rejected` and `connectionRefused` events until stopped. */
function listen(): { rejected: RejectedEvent[]; refused: ConnectionRefusedEvent[]; stop(): void } {
  const rejected: RejectedEvent[] = [];
  const refused: ConnectionRefusedEvent[] = [];
  const offs = [on('rejected', (e) => rejected.push(e)), on('connectionRefused', (e) => refused.push(e))];
  return { rejected, refused, stop: () => offs.forEach((off) => off()) };
}

/** A whole message from a fresh session: the server still serves. */
async function stillServes(port: number): Promise<void> {
  const c = await RawClient.ready(port);
  const r = await c.send('ok@example.org', ['ok@localhost'], 'Subject: ok\r\n\r\nstill here\r\n');
  await c.quit();
  assert.ok(isQueued(r), `a well-behaved client is served: ${r.text}`);
}

describe('limits per session', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({
      maxCommands: 12, maxBadCommands: 3, maxLineLength: 512, maxRecipients: 2, maxSize: 1000, dataTimeout: 1500,
    });
  });
  after(async () => { await server.stop(); });

  it('commands per session: one more than --max-commands gets 421 4.7.0 and the connection is closed', async () => {
    const ev = listen();
    const c = await RawClient.ready(server.port);
    const replies = await c.pipelined([...Array(10).fill('NOOP'), 'RSET']);
    assert.deepEqual(replies.map((r) => r.code), Array(11).fill(250), '12 commands (EHLO included) are served');
    const over = await c.command('NOOP');
    assert.match(over.text, /^421 4\.7\.0 /);
    assert.ok(await c.closedByServer());
    ev.stop();
    assert.deepEqual(ev.rejected.map((e) => [e.stage, e.reason, e.code]), [['command', 'too-many-commands', 421]]);
    await stillServes(server.port);
  });

  it('bad commands: the third (of unknown, bad syntax, out of sequence) gets 421 4.7.0 instead of its 5xx', async () => {
    const ev = listen();
    const c = await RawClient.ready(server.port);
    assert.equal((await c.command('FROB')).code, 500);
    assert.equal((await c.command('RCPT TO:<a@localhost>')).code, 503);
    const third = await c.command('MAIL FROM:<a@example.org> FOO=1');
    assert.match(third.text, /^421 4\.7\.0 /);
    assert.ok(await c.closedByServer());
    ev.stop();
    assert.deepEqual(ev.rejected.map((e) => [e.stage, e.reason]), [['mail', 'unknown-parameter'], ['command', 'too-many-bad-commands']]);
  });

  it('line length: a command line over --max-line-length gets 421 4.7.0', async () => {
    const ev = listen();
    const c = await RawClient.ready(server.port);
    assert.equal((await c.command(`NOOP ${'x'.repeat(500)}`)).code, 250, '505 bytes is within 512');
    c.write(`NOOP ${'x'.repeat(600)}\r\n`);
    const replies = await c.readUntilClosed();
    assert.deepEqual(replies.map((r) => r.text.slice(0, 9)), ['421 4.7.0']);
    ev.stop();
    assert.deepEqual(ev.rejected.map((e) => [e.stage, e.reason]), [['command', 'line-too-long']]);
    await stillServes(server.port);
  });

  it('recipients: past --max-recipients 452 4.5.3; size: a declared or a sent size past --max-size 552 5.3.4', async () => {
    const ev = listen();
    const c = await RawClient.ready(server.port);
    const ehlo = await c.command('EHLO again.test');
    assert.ok(ehlo.lines.some((l) => l.slice(4) === 'SIZE 1000'), 'EHLO offers the size limit');
    assert.match((await c.command('MAIL FROM:<a@example.org> SIZE=1001')).text, /^552 5\.3\.4 /);
    const env = await c.envelope('a@example.org', ['one@localhost', 'two@localhost', 'three@localhost']);
    assert.deepEqual(env.map((r) => r.code), [250, 250, 250, 452]);
    assert.match(env[3]!.text, /^452 4\.5\.3 /);
    const big = await c.data(`Subject: big\r\n\r\n${'y'.repeat(1200)}\r\n`);
    assert.match(big.text, /^552 5\.3\.4 /);
    await c.quit();
    ev.stop();
    assert.deepEqual(ev.rejected.map((e) => [e.stage, e.reason]), [['mail', 'too-big'], ['rcpt', 'too-many-recipients'], ['data', 'too-big']]);
    assert.equal(server.store.count(), 2, 'only the stillServes messages are queued');
  });

  it('total DATA time: a client trickling its message gets 421 4.4.2, nothing is stored, others are served meanwhile', async () => {
    const ev = listen();
    const before = server.store.count();
    const c = await RawClient.ready(server.port);
    await c.envelope('slow@example.org', ['slow@localhost']);
    assert.equal((await c.command('DATA')).code, 354);
    // a byte every 100 ms keeps the idle timeout away; only the total DATA time ends it
    let reply: string | undefined;
    const trickle = (async () => {
      for (let i = 0; i < 600 && reply === undefined; i++) {
        c.write('z');
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await stillServes(server.port);
    const replies = await c.readUntilClosed(60_000);
    reply = replies.map((r) => r.text).join(' | ');
    await trickle;
    assert.match(reply, /^421 4\.4\.2 /);
    ev.stop();
    assert.deepEqual(ev.rejected.map((e) => [e.stage, e.reason]), [['data', 'data-timeout']]);
    assert.equal(server.store.count(), before + 1, 'the well-behaved message only');
  });
});

describe('connections per client address', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer({ maxClientsPerIp: 2 }); });
  after(async () => { await server.stop(); });

  it('a third session from one address gets 421 4.7.0; another address, and the first after one leaves, are served', async () => {
    const ev = listen();
    const a = await RawClient.ready(server.port);
    const b = await RawClient.ready(server.port);
    const third = await RawClient.connect(server.port);
    assert.match((await third.read()).text, /^421 4\.7\.0 /);
    assert.ok(await third.closedByServer());
    // 127.0.0.2 is another client address on the loopback interface
    const other = await RawClient.connect(server.port, '127.0.0.1', '127.0.0.2');
    assert.equal((await other.read()).code, 220);
    assert.equal((await a.command('NOOP')).code, 250, 'the sessions already open go on');
    await a.quit();
    await other.quit();
    // the server counts a session until its socket closes; the next one then fits
    let again: number | undefined;
    for (let i = 0; i < 50 && again !== 220; i++) {
      const c = await RawClient.connect(server.port);
      again = (await c.read()).code;
      await c.quit();
      if (again !== 220) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(again, 220);
    await b.quit();
    ev.stop();
    assert.ok(ev.refused.length >= 1);
    assert.deepEqual(ev.refused[0], { reason: 'per-client', remoteAddress: '127.0.0.1', reply: '421 4.7.0 Too many connections from your address, try again later' });
  });
});

describe('connections per client address, behind a balancer (PROXY protocol)', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer({ maxClientsPerIp: 1, proxyFrom: ['127.0.0.1'] }); });
  after(async () => { await server.stop(); });

  /** A session through the "balancer" (this process on 127.0.0.1) for the client at `src`. */
  async function viaBalancer(src: string): Promise<RawClient> {
    const c = await RawClient.connect(server.port);
    c.write(`PROXY TCP4 ${src} 192.0.2.1 40000 25\r\n`);
    return c;
  }

  it('counts the client address from the PROXY header, not the balancer\'s', async () => {
    const ev = listen();
    const a = await viaBalancer('198.51.100.7');
    assert.equal((await a.read()).code, 220);
    const b = await viaBalancer('198.51.100.8');
    assert.equal((await b.read()).code, 220, 'another client behind the same balancer is served');
    const again = await viaBalancer('198.51.100.7');
    assert.match((await again.read()).text, /^421 4\.7\.0 /);
    assert.ok(await again.closedByServer());
    await a.quit();
    await b.quit();
    ev.stop();
    assert.deepEqual(ev.refused.map((e) => [e.reason, e.remoteAddress]), [['per-client', '198.51.100.7']]);
  });
});

describe('idle time', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer({ socketTimeout: 1000 }); });
  after(async () => { await server.stop(); });

  it('a session idle past --idle-timeout gets 421 4.4.2 and is closed', async () => {
    const ev = listen();
    const c = await RawClient.ready(server.port);
    const replies = await c.readUntilClosed(30_000);
    assert.deepEqual(replies.map((r) => r.text), ['421 4.4.2 Idle timeout, closing connection']);
    ev.stop();
    assert.deepEqual(ev.rejected.map((e) => [e.stage, e.reason]), [['command', 'idle-timeout']]);
  });
});

describe('limits in /metrics', () => {
  it('each limit hit is counted under its stage and reason', async () => {
    const server = await startTestServer({ metrics: '127.0.0.1:0', maxCommands: 3, maxClientsPerIp: 1 });
    try {
      const c = await RawClient.ready(server.port);
      const refused = await RawClient.connect(server.port);
      assert.match((await refused.read()).text, /^421 4\.7\.0 /);
      assert.match((await c.command('MAIL FROM:<a@example.org> FOO=1')).text, /^555 /);
      assert.equal((await c.command('NOOP')).code, 250);
      assert.match((await c.command('RSET')).text, /^421 4\.7\.0 /);
      const samples = parseExposition((await scrape(server.metricsPort!)).text);
      assert.equal(valueOf(samples, 'smtp_receive_connections_refused_total', { reason: 'per-client' }), 1);
      assert.equal(valueOf(samples, 'smtp_receive_messages_rejected_total', { stage: 'mail', reason: 'unknown-parameter' }), 1);
      assert.equal(valueOf(samples, 'smtp_receive_messages_tempfailed_total', { stage: 'command', reason: 'too-many-commands' }), 1);
      // the replies by command: the 555 answered MAIL, the limit's 421 the RSET it refused
      assert.equal(valueOf(samples, 'smtp_receive_smtp_replies_total', { command: 'MAIL', class: '5xx' }), 1);
      assert.equal(valueOf(samples, 'smtp_receive_smtp_replies_total', { command: 'RSET', class: '4xx' }), 1);
    } finally {
      await server.stop();
    }
  });
});

describe('limit options and flags', () => {
  it('each flag sets its option; bad values name the option', () => {
    const o = parseServeArgs(['--max-clients-per-ip', '3', '--max-commands', '4', '--max-bad-commands', '5', '--idle-timeout', '6000',
      '--data-timeout', '7000', '--max-line-length', '800', '--max-recipients', '9', '--max-size', '10']);
    assert.ok(o !== 'help');
    assert.deepEqual([o.maxClientsPerIp, o.maxCommands, o.maxBadCommands, o.socketTimeout, o.dataTimeout, o.maxLineLength, o.maxRecipients, o.maxSize],
      [3, 4, 5, 6000, 7000, 800, 9, 10]);
    const d = resolveOptions({});
    assert.deepEqual([d.maxClientsPerIp, d.maxCommands, d.maxBadCommands, d.socketTimeout, d.dataTimeout, d.maxLineLength],
      [50, 10_000, 10, 60_000, 600_000, 4096]);
    assert.throws(() => resolveOptions({ maxLineLength: 100 }), (e: unknown) => e instanceof OptionError && e.option === 'maxLineLength');
    assert.throws(() => resolveOptions({ maxRecipients: 0 }), (e: unknown) => e instanceof OptionError && e.option === 'maxRecipients');
  });
});
