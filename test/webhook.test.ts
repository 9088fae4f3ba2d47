/**
 * The built-in webhook receiver against an HTTP server the test starts on
 * 127.0.0.1: 2xx delivers, a 500 and a timeout leave the message queued with
 * the reason until the endpoint answers 2xx, the signature verifies with the
 * exported helper (and a tampered request does not).
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { StoredBody } from '../src/core/body.ts';
import { Message } from '../src/core/message.ts';
import { flush, readWebhookEnvelope, runQueue, verifyWebhookSignature, WebhookReceiver } from '../src/index.ts';
import { encodeAddress } from '../src/receivers/webhook-signature.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { sendRaw, testMessage } from './helpers/mail.ts';
import { storedMessage, until } from './helpers/queue.ts';

const SECRET = 'test-secret-3f1c';

interface Hit { headers: IncomingMessage['headers']; method: string; url: string; body: Buffer }
type Answer = 200 | 204 | 302 | 500 | 'hang';

/** An HTTP endpoint on 127.0.0.1 that records requests and answers from a script (then 200). */
class Endpoint {
  readonly hits: Hit[] = [];
  script: Answer[] = [];
  private readonly hanging: ServerResponse[] = [];
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.hits.push({ headers: req.headers, method: req.method!, url: req.url!, body: Buffer.concat(chunks) });
        const answer = this.script.shift() ?? 200;
        if (answer === 'hang') return void this.hanging.push(res);
        if (answer === 302) return void res.writeHead(302, { location: '/elsewhere' }).end();
        res.writeHead(answer, { 'content-type': 'text/plain' }).end(answer === 500 ? 'database down\nretry later' : '');
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/inbound?token=abc`;
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  hitsFor(id: string): Hit[] {
    return this.hits.filter((h) => h.headers['x-smtp-receive-id'] === id);
  }
}

function message(to: string[], bytes: Buffer): { m: Message; body: StoredBody } {
  const m = new Message({
    id: '0MX4OLAVR000074T1', peerAddr: '127.0.0.1', peerHost: '', ident: '', helo: 'x', mimeType: '7BIT',
    from: 'a@example.org', to, time: Date.now(), textFile: '/nonexistent/unused.eml', size: bytes.length,
  });
  return { m, body: new StoredBody(bytes, bytes.length, m.textFile) };
}

let hook: Endpoint;
before(async () => {
  hook = new Endpoint();
  await hook.start();
});
after(async () => { await hook.stop(); });

describe('webhook: 2xx delivers, signed', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ builtin: { kind: 'webhook', options: { url: hook.url, secret: SECRET } }, runner: false });
  });
  after(async () => { await server.stop(); });

  it('POSTs the stored bytes as message/rfc822 with the envelope in headers; the message leaves the queue', async () => {
    const raw = testMessage('hook-2xx');
    const id = await sendRaw(server.port, { from: 'sender@example.org', to: ['alice@localhost', 'bob@localhost'] }, raw);
    const stored = (await storedMessage(server.store, id))!.bytes;
    hook.script = [204];
    assert.equal((await runQueue({ queueDir: server.queueDir })).delivered, 1);
    assert.equal(server.store.has(id), false);
    const [hit, ...more] = hook.hitsFor(id);
    assert.equal(more.length, 0, 'one request');
    assert.equal(hit!.method, 'POST');
    assert.equal(hit!.url, '/inbound?token=abc');
    assert.equal(hit!.headers['content-type'], 'message/rfc822');
    assert.deepEqual(hit!.body, stored, 'the body is the stored message, byte for byte');
    assert.equal(hit!.headers['x-smtp-receive-from'], 'sender@example.org');
    assert.equal(hit!.headers['x-smtp-receive-to'], 'alice@localhost,bob@localhost');
    const ts = Number(hit!.headers['x-smtp-receive-timestamp']);
    assert.ok(Math.abs(ts - Date.now() / 1000) < 60, `timestamp ${ts}`);
    assert.match(String(hit!.headers['x-smtp-receive-signature']), /^sha256=[0-9a-f]{64}$/);
    assert.deepEqual(readWebhookEnvelope(hit!.headers), { id, from: 'sender@example.org', to: ['alice@localhost', 'bob@localhost'], timestamp: ts });

    // the app's side: the exported helper
    assert.equal(verifyWebhookSignature(SECRET, hit!.headers, hit!.body), true, 'verifies');
    assert.equal(verifyWebhookSignature(SECRET, new Headers(hit!.headers as Record<string, string>), hit!.body), true, 'fetch Headers too');
    const tampered = Buffer.from(hit!.body);
    tampered[tampered.length - 3] ^= 1;
    assert.equal(verifyWebhookSignature(SECRET, hit!.headers, tampered), false, 'a changed body does not');
    assert.equal(verifyWebhookSignature(SECRET, { ...hit!.headers, 'x-smtp-receive-to': 'mallory@localhost' }, hit!.body), false, 'a changed recipient does not');
    assert.equal(verifyWebhookSignature('other-secret', hit!.headers, hit!.body), false, 'another secret does not');
    assert.equal(verifyWebhookSignature(SECRET, hit!.headers, hit!.body, { now: Date.now() + 600_000 }), false, 'a replay 10 minutes later does not');
    const { 'x-smtp-receive-signature': _sig, ...unsigned } = hit!.headers;
    assert.equal(verifyWebhookSignature(SECRET, unsigned, hit!.body), false, 'no signature does not');
  });

  it('the null sender is an empty From; addresses outside printable ASCII are percent-encoded', async () => {
    const id = await sendRaw(server.port, { from: '', to: ['carol@localhost'] }, testMessage('hook-null'));
    await runQueue({ queueDir: server.queueDir });
    const hit = hook.hitsFor(id)[0]!;
    assert.equal(hit.headers['x-smtp-receive-from'], '');
    assert.equal(verifyWebhookSignature(SECRET, hit.headers, hit.body), true);
    assert.equal(encodeAddress('jörg,x%@localhost'), 'j%C3%B6rg%2Cx%25@localhost');
    assert.deepEqual(readWebhookEnvelope({ 'x-smtp-receive-id': 'X', 'x-smtp-receive-from': 'j%C3%B6rg@x', 'x-smtp-receive-to': 'a%2Cb@x,c@x', 'x-smtp-receive-timestamp': '1' }),
      { id: 'X', from: 'jörg@x', to: ['a,b@x', 'c@x'], timestamp: 1 });
  });
});

describe('webhook: failures retry through the queue', () => {
  let server: TestServer;
  before(async () => {
    // retries minutes away (the default backoff): the test makes them due with flush
    server = await startTestServer({ builtin: { kind: 'webhook', options: { url: hook.url, timeout: 400 } }, pollInterval: 50 });
  });
  after(async () => { await server.stop(); });

  for (const [answer, reason] of [[500, /answered 500 Internal Server Error: database down retry later/], ['hang', /no answer within 400 ms \(timeout\)/]] as const) {
    it(`${answer}: the message stays queued with the reason, then is delivered once the endpoint answers 2xx`, async () => {
      hook.script = [answer];
      const id = await sendRaw(server.port, { from: 'sender@example.org', to: ['dave@localhost'] }, testMessage(`hook-${answer}`));
      await until(() => (server.store.get(id)?.attempts ?? 0) >= 1, 'the first attempt to be recorded', 10_000);
      const record = server.store.get(id)!;
      assert.equal(record.state, 'queued');
      assert.match(record.msg.error ?? '', reason);
      assert.match(record.msg.error ?? '', /^webhook: POST http:\/\/127\.0\.0\.1:\d+\/inbound(:| answered)/, 'the URL without its query (a token)');
      assert.ok(record.nextAttempt > Date.now() + 60_000, 'retried later, with backoff');
      await flush(server.queueDir);
      await until(() => !server.store.has(id), 'the retry to deliver', 10_000);
      assert.equal(hook.hitsFor(id).length, 2, 'one failed request, one that delivered');
    });
  }
});

describe('webhook: requests that fail and options that are wrong', () => {
  it('a refused connection and a redirect throw (the queue retries)', async () => {
    const { m, body } = message(['x@localhost'], testMessage('direct'));
    await assert.rejects(new WebhookReceiver({ url: 'http://127.0.0.1:1/' }).deliver(m, body), /webhook: POST http:\/\/127\.0\.0\.1:1\/: ECONNREFUSED/);
    hook.script = [302];
    await assert.rejects(new WebhookReceiver({ url: hook.url }).deliver(m, body), /answered 302/);
  });

  it('checks its options at construction, naming the option', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ url: 'ftp://example.net/' }, /WebhookReceiver option url: expected an http\(s\) URL, got "ftp:\/\/example\.net\/"$/],
      [{ url: 'not a url' }, /option url: expected an http\(s\) URL/],
      [{}, /option url: missing/],
      [{ url: 'https://u:p@example.net/' }, /option url: a user or password in the URL is not supported/],
      [{ url: 'https://example.net/', timeout: 0 }, /option timeout: must be a whole number/],
      [{ url: 'https://example.net/', secret: '' }, /option secret: expected a non-empty string/],
      [{ url: 'https://example.net/', headers: { 'bad name': 'x' } }, /option headers: "bad name"/],
    ];
    for (const [options, re] of cases) assert.throws(() => new WebhookReceiver(options as never), re, JSON.stringify(options));
  });
});
