/**
 * The built-in relay against an smtp-server sink on 127.0.0.1 that the test
 * starts: 250 delivers (the sink gets the exact bytes and envelope), 451
 * retries, a 550 fails that recipient only — recorded in the queue, shown by
 * showqueue, handed to the failed() hook once, and never retried.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { StoredBody } from '../src/core/body.ts';
import { Message } from '../src/core/message.ts';
import { flush, RelayReceiver, runQueue, showQueue } from '../src/index.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { REPO_ROOT } from './helpers/cli.ts';
import { sendRaw, testMessage } from './helpers/mail.ts';
import { jsonLines } from './helpers/logs.ts';
import { storedMessage, until } from './helpers/queue.ts';

const HOOKED = new URL('./fixtures/relay-hook.ts', import.meta.url).pathname;
const TRACE = new URL('./fixtures/trace-imports.mjs', import.meta.url).pathname;

interface Received { from: string; to: string[]; bytes: Buffer }

/** An SMTP sink: answers RCPT TO per a script (code lists per address, then 250) and records every message. */
class Sink {
  readonly received: Received[] = [];
  readonly rcptTries = new Map<string, number>();
  readonly script = new Map<string, number[]>();
  private server!: SMTPServer;
  port = 0;

  async start(): Promise<void> {
    const refuse = (code: number, text: string): Error => Object.assign(new Error(text), { responseCode: code });
    this.server = new SMTPServer({
      logger: false, disabledCommands: ['AUTH', 'STARTTLS'], hideSTARTTLS: true, authOptional: true,
      onRcptTo: (address, _session, callback) => {
        const a = address.address;
        this.rcptTries.set(a, (this.rcptTries.get(a) ?? 0) + 1);
        const code = this.script.get(a)?.shift();
        if (code === 550) return callback(refuse(550, '5.1.1 No such user here'));
        if (code === 451) return callback(refuse(451, '4.2.0 Mailbox busy, try later'));
        callback();
      },
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const bytes = Buffer.concat(chunks);
          const env = session.envelope;
          if (bytes.includes('Subject: refuse-data')) return callback(refuse(554, '5.7.1 Content refused'));
          this.received.push({ from: env.mailFrom ? env.mailFrom.address : '<none>', to: env.rcptTo.map((r) => r.address), bytes });
          callback();
        });
      },
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.server.address() as AddressInfo).port;
  }

  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }

  to(address: string): Received[] {
    return this.received.filter((m) => m.to.includes(address));
  }
}

let sink: Sink;
let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-relay-'));
  sink = new Sink();
  await sink.start();
});
after(async () => {
  await sink.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe('relay: 250 delivers', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ builtin: { kind: 'relay', options: { host: '127.0.0.1', port: sink.port } }, runner: false });
  });
  after(async () => { await server.stop(); });

  it('the smarthost gets the stored bytes with the original envelope; the message leaves the queue', async () => {
    const id = await sendRaw(server.port, { from: 'sender@example.org', to: ['alice@localhost', 'bob@localhost'] }, testMessage('relay-250', 300));
    const stored = (await storedMessage(server.store, id))!.bytes;
    assert.equal((await runQueue({ queueDir: server.queueDir })).delivered, 1);
    assert.equal(server.store.has(id), false);
    const got = sink.to('alice@localhost');
    assert.equal(got.length, 1);
    assert.equal(got[0]!.from, 'sender@example.org');
    assert.deepEqual(got[0]!.to, ['alice@localhost', 'bob@localhost']);
    assert.deepEqual(got[0]!.bytes, stored, 'byte for byte (dot-stuffing undone by the sink)');
  });

  it('the null sender stays <>', async () => {
    await sendRaw(server.port, { from: '', to: ['carol@localhost'] }, testMessage('relay-null'));
    await runQueue({ queueDir: server.queueDir });
    assert.equal(sink.to('carol@localhost')[0]!.from, '');
  });
});

describe('relay: temporary and permanent refusals', () => {
  let server: TestServer;
  let failedLog: string;
  const hookLines = async (): Promise<Array<{ id: string; recipient: string; code: number; enhanced: string }>> =>
    (existsSync(failedLog) ? jsonLines(await readFile(failedLog, 'utf8')) : []);

  before(async () => {
    failedLog = join(tmp, 'failed.log');
    process.env.RELAY_PORT = String(sink.port); // read by the fixture, in this thread and the workers created below
    process.env.FAILED_LOG = failedLog;
    // retries minutes away (the default backoff): the test makes them due with flush
    server = await startTestServer({ receiverPath: HOOKED, pollInterval: 50 });
  });
  after(async () => { await server.stop(); });

  it('451: the message stays queued with the reply, then is delivered once the smarthost takes it', async () => {
    sink.script.set('dave@localhost', [451]);
    const id = await sendRaw(server.port, { from: 'sender@example.org', to: ['dave@localhost'] }, testMessage('relay-451'));
    await until(() => (server.store.get(id)?.attempts ?? 0) >= 1, 'the first attempt to be recorded', 10_000);
    const r = server.store.get(id)!;
    assert.equal(r.state, 'queued');
    assert.match(r.msg.error ?? '', /^relay: 127\.0\.0\.1:\d+ deferred dave@localhost: 451 4\.2\.0 Mailbox busy/);
    assert.equal(r.msg.failed, undefined, 'a 4xx fails nobody');
    assert.equal(sink.to('dave@localhost').length, 0);
    await flush(server.queueDir);
    await until(() => !server.store.has(id), 'the retry to deliver', 10_000);
    assert.equal(sink.to('dave@localhost').length, 1);
    assert.equal(sink.rcptTries.get('dave@localhost'), 2);
  });

  it('550 for one recipient fails only that one: recorded, shown, hooked once, never retried', async () => {
    sink.script.set('bad@localhost', [550, 550, 550]);
    sink.script.set('later@localhost', [451]);
    const to = ['good@localhost', 'bad@localhost', 'later@localhost'];
    const id = await sendRaw(server.port, { from: 'sender@example.org', to }, testMessage('relay-550'));
    await until(() => (server.store.get(id)?.attempts ?? 0) >= 1, 'the first attempt to be recorded', 10_000);

    const r = server.store.get(id)!;
    assert.deepEqual(r.msg.failed?.map((f) => [f.recipient, f.reply.code, f.reply.enhanced, f.reply.text]),
      [['bad@localhost', 550, '5.1.1', 'No such user here']]);
    assert.deepEqual(r.delivered, ['good@localhost']);
    assert.match(r.msg.error ?? '', /deferred later@localhost: 451/);
    assert.equal(sink.to('good@localhost').length, 1, 'good@ delivered on the first attempt');

    const listing = new PassThrough();
    const chunks: Buffer[] = [];
    listing.on('data', (c: Buffer) => chunks.push(c));
    await showQueue(server.queueDir, listing, { json: true, ids: [id] });
    const recipients = (JSON.parse(Buffer.concat(chunks).toString()) as { recipients: Array<{ address: string; delay_reason: string }> }).recipients;
    assert.deepEqual(recipients.map((x) => x.address), to);
    assert.equal(recipients[0]!.delay_reason, 'delivered');
    assert.equal(recipients[1]!.delay_reason, 'failed for good: 550 5.1.1 No such user here');
    assert.match(recipients[2]!.delay_reason, /451 4\.2\.0 Mailbox busy/);

    assert.deepEqual((await hookLines()).filter((l) => l.id === id), [{ id, recipient: 'bad@localhost', code: 550, enhanced: '5.1.1' }]);

    await flush(server.queueDir);
    await until(() => !server.store.has(id), 'the retry to finish the message', 10_000);
    assert.equal(sink.rcptTries.get('bad@localhost'), 1, 'bad@ never asked again');
    assert.equal(sink.rcptTries.get('good@localhost'), 1, 'good@ not sent twice');
    assert.deepEqual(sink.to('later@localhost').map((m) => m.to), [['later@localhost']], 'the retry went to later@ only');
    assert.equal((await hookLines()).filter((l) => l.id === id).length, 1, 'the hook ran once');
  });

  it('every recipient refused with 5xx (at RCPT, or at the end of DATA): the message is finished at once', async () => {
    sink.script.set('gone@localhost', [550]);
    const id1 = await sendRaw(server.port, { from: 'sender@example.org', to: ['gone@localhost'] }, testMessage('relay-all-550'));
    const id2 = await sendRaw(server.port, { from: 'sender@example.org', to: ['x@localhost', 'y@localhost'] }, testMessage('refuse-data'));
    await until(() => !server.store.has(id1) && !server.store.has(id2), 'both to leave the queue', 10_000);
    const lines = await hookLines();
    assert.deepEqual(lines.filter((l) => l.id === id1).map((l) => [l.recipient, l.code]), [['gone@localhost', 550]]);
    assert.deepEqual(lines.filter((l) => l.id === id2).map((l) => [l.recipient, l.code]), [['x@localhost', 554], ['y@localhost', 554]]);
  });
});

describe('relay: a smarthost that cannot be reached, and options', () => {
  it('a refused connection throws (the queue retries)', async () => {
    const bytes = testMessage('relay-refused');
    const m = new Message({
      id: '0MX4OLAVR000075T1', peerAddr: '127.0.0.1', peerHost: '', ident: '', helo: 'x', mimeType: '7BIT',
      from: 'a@example.org', to: ['x@localhost'], time: Date.now(), textFile: '/nonexistent/unused.eml', size: bytes.length,
    });
    const r = new RelayReceiver({ host: '127.0.0.1', port: 1, timeout: 2000 });
    r.config = { domains: ['localhost'], queueDir: tmp, hostname: 'relay.test' };
    await assert.rejects(r.deliver(m, new StoredBody(bytes, bytes.length, m.textFile)), /relay: 127\.0\.0\.1:1: .*ECONNREFUSED/);
    assert.equal(m.failed, undefined);
  });

  it('checks its options at construction, naming the option', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{}, /RelayReceiver option host: missing/],
      [{ host: 'a b' }, /option host: expected a host name/],
      [{ host: 'mx.example.net', port: 0 }, /option port: must be a whole number from 1 to 65535, got 0/],
      [{ host: 'mx.example.net', timeout: -5 }, /option timeout/],
      [{ host: 'mx.example.net', starttls: 'maybe' }, /option starttls: expected 'opportunistic', 'require' or 'off'/],
      [{ host: 'mx.example.net', auth: { user: 'u' } }, /option auth: expected \{ user, pass \}/],
    ];
    for (const [options, re] of cases) assert.throws(() => new RelayReceiver(options as never), re, JSON.stringify(options));
  });
});

describe('relay: nodemailer loads only when the relay is used', () => {
  it('importing smtp-receive (every worker does) and constructing a RelayReceiver load no nodemailer; prestart does', async () => {
    const loaded = async (mode: string): Promise<string[]> => {
      const trace = join(tmp, `trace-${mode}`);
      const script = `const { RelayReceiver } = await import(${JSON.stringify(join(REPO_ROOT, 'src/index.ts'))});
        const r = new RelayReceiver({ host: '127.0.0.1', port: 2 });
        if (${JSON.stringify(mode)} === 'prestart') await r.prestart({ domains: ['localhost'], queueDir: '/tmp', hostname: 'x' });`;
      execFileSync(process.execPath, ['--import', 'tsx', '--import', TRACE, '--input-type=module', '-e', script],
        { cwd: REPO_ROOT, env: { ...process.env, TRACE_IMPORTS: trace }, stdio: ['ignore', 'ignore', 'pipe'] });
      return (await readFile(trace, 'utf8')).split('\n').filter((u) => u.includes('/node_modules/nodemailer/'));
    };
    assert.deepEqual(await loaded('import'), []);
    assert.ok((await loaded('prestart')).length > 0, 'the trace sees nodemailer once the relay needs it');
  });
});
