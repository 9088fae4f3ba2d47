/**
 * SMTP AUTH through checkAuth: offered only inside TLS (unless allowInsecureAuth)
 * and only when the receiver has checkAuth; PLAIN and LOGIN with nodemailer;
 * failures slowed and counted; hook errors fail closed; session.user reaches
 * checkRcptTo; and the open-relay probe with and without TLS.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { on, type RejectedEvent } from '../src/core/events.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { SECRET } from './fixtures/auth.ts';
import { storedMessage } from './helpers/queue.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';
import { certDir, implicitTls, makeCert, startTls, type TestCert } from './helpers/tls.ts';

const AUTH = fileURLToPath(new URL('./fixtures/auth.ts', import.meta.url));
const AUTH_ONLY = fileURLToPath(new URL('./fixtures/auth-only.ts', import.meta.url));
const RAW = 'Subject: auth\r\n\r\nhello\r\n';
const plain64 = (user: string, pass: string): string => Buffer.from(`\0${user}\0${pass}`).toString('base64');

let tmp: Awaited<ReturnType<typeof certDir>>;
let cert: TestCert;
before(async () => {
  tmp = await certDir();
  cert = await makeCert(tmp.dir, 'server');
});
after(() => tmp.rm());

/** nodemailer with STARTTLS required (a self-signed certificate: trusted as the CA here). */
function client(port: number, auth?: { user: string; pass: string }, authMethod = 'PLAIN') {
  return nodemailer.createTransport({
    host: '127.0.0.1', port, secure: false, requireTLS: true, tls: { ca: cert.cert, servername: 'localhost' }, auth, authMethod,
  });
}

async function send(port: number, to: string, auth?: { user: string; pass: string }, authMethod?: string): Promise<string> {
  const t = client(port, auth, authMethod);
  try {
    return (await t.sendMail({ envelope: { from: 'sender@example.org', to: [to] }, raw: RAW })).response;
  } finally {
    t.close();
  }
}

const authLine = (ehlo: string[]): string | undefined => ehlo.find((l) => /^250[- ]AUTH\b/.test(l));

describe('with checkAuth and TLS', () => {
  let server: TestServer;
  const rejected: RejectedEvent[] = [];
  let off: () => void;
  before(async () => {
    off = on('rejected', (e) => rejected.push(e));
    server = await startTestServer({ receiverPath: AUTH, tlsKey: cert.keyFile, tlsCert: cert.certFile, authFailureDelay: 300 });
  });
  after(async () => {
    off();
    await server.stop();
  });

  it('AUTH is not offered before STARTTLS, and an AUTH there is refused; inside TLS it offers PLAIN and LOGIN', async () => {
    const plain = await RawClient.ready(server.port);
    const ehlo = await plain.command('EHLO client.test');
    assert.equal(authLine(ehlo.lines), undefined, ehlo.text);
    const r = await plain.command(`AUTH PLAIN ${plain64('alice', 'secret')}`);
    assert.ok(r.code >= 500, r.text);
    await plain.quit();
    const { client: c } = await startTls(server.port);
    const inside = await c.command('EHLO client.test');
    assert.match(authLine(inside.lines) ?? '', /^250[- ]AUTH PLAIN LOGIN$/);
    await c.quit();
  });

  it('AUTH PLAIN and LOGIN succeed with nodemailer; the authenticated client may relay (the receiver says so); ESMTPSA', async () => {
    const plainId = queuedId({ code: 250, text: await send(server.port, 'someone@far.example', { user: 'alice', pass: 'secret' }), lines: [] });
    const loginId = queuedId({ code: 250, text: await send(server.port, 'other@far.example', { user: 'bob', pass: 'pw' }, 'LOGIN'), lines: [] });
    for (const id of [plainId, loginId]) {
      const text = (await storedMessage(server.store, id))!.bytes.toString('latin1');
      assert.match(text, / with ESMTPSA id /, text);
      assert.match(text, /\(using TLSv1\.[23] with cipher \S+\)/, text);
    }
  });

  it('session.user reaches checkRcptTo: the same foreign recipient is refused without AUTH (over TLS: the open-relay probe)', async () => {
    await assert.rejects(send(server.port, 'someone@far.example'), (err: { responseCode?: number; response?: string }) => {
      assert.equal(err.responseCode, 550, String(err.response));
      assert.match(String(err.response), /5\.7\.1/);
      return true;
    });
  });

  it('a wrong password gets 535 5.7.8, after the failure delay, and is counted (rejected, stage auth)', async () => {
    const before = rejected.length;
    const started = performance.now();
    await assert.rejects(send(server.port, 'someone@localhost', { user: 'alice', pass: 'wrong' }), (err: { responseCode?: number; response?: string }) => {
      assert.equal(err.responseCode, 535, String(err.response));
      assert.match(String(err.response), /^535 5\.7\.8 /);
      return true;
    });
    // a lower bound only: the 535 never comes before the configured delay
    assert.ok(performance.now() - started >= 290, 'the refusal waited for authFailureDelay');
    const auth = rejected.slice(before).filter((e) => e.stage === 'auth');
    assert.deepEqual(auth.map((e) => [e.reason, e.code]), [['bad-credentials', 535]]);
    assert.ok(!JSON.stringify(auth).includes('wrong'), 'the password is in no event');
  });

  it('a hook that throws fails closed: 454 4.7.0, its text only in the log; a thrown reply is sent as it is', async () => {
    const { client: c } = await startTls(server.port);
    await c.command('EHLO client.test');
    const r = await c.command(`AUTH PLAIN ${plain64('boom', 'x')}`);
    assert.match(r.text, /^454 4\.7\.0 /);
    assert.ok(!r.text.includes(SECRET));
    const locked = await c.command(`AUTH PLAIN ${plain64('refused', 'x')}`);
    assert.match(locked.text, /^535 5\.7\.8 account locked/);
    // still not authenticated: a foreign recipient is refused
    assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await c.command('RCPT TO:<x@far.example>')).code, 550);
    await c.quit();
  });
});

describe('the default receiver: no checkAuth, no AUTH; no open relay with or without TLS', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ tlsKey: cert.keyFile, tlsCert: cert.certFile });
  });
  after(() => server.stop());

  it('AUTH is not offered inside TLS either, and is not a command', async () => {
    const { client: c } = await startTls(server.port);
    const ehlo = await c.command('EHLO client.test');
    assert.equal(authLine(ehlo.lines), undefined, ehlo.text);
    assert.equal((await c.command(`AUTH PLAIN ${plain64('alice', 'secret')}`)).code, 500);
    await c.quit();
  });

  it('a foreign recipient from an unauthenticated client is refused, over TLS and in plaintext', async () => {
    const { client: c } = await startTls(server.port);
    await c.command('EHLO client.test');
    const [, tlsRcpt] = await c.envelope('a@example.org', ['victim@far.example']);
    assert.match(tlsRcpt!.text, /^550 5\.7\.1 /);
    await c.quit();
    const p = await RawClient.ready(server.port);
    const [, rcpt] = await p.envelope('a@example.org', ['victim@far.example']);
    assert.match(rcpt!.text, /^550 5\.7\.1 /);
    await p.quit();
  });
});

describe('checkAuth with the default checkRcptTo', () => {
  it('an authenticated client still may not relay', async () => {
    const server = await startTestServer({ receiverPath: AUTH_ONLY, tlsKey: cert.keyFile, tlsCert: cert.certFile });
    try {
      await assert.rejects(send(server.port, 'victim@far.example', { user: 'alice', pass: 'secret' }), (err: { responseCode?: number }) => err.responseCode === 550);
      assert.match(await send(server.port, 'someone@localhost', { user: 'alice', pass: 'secret' }), /queued as/);
    } finally {
      await server.stop();
    }
  });
});

describe('the implicit-TLS listener', () => {
  it('offers AUTH from the start, and a client authenticates there', async () => {
    const server = await startTestServer({ receiverPath: AUTH, tlsKey: cert.keyFile, tlsCert: cert.certFile, tlsPort: 0 });
    try {
      const { client: c } = await implicitTls(server.tls!.port);
      assert.match(authLine((await c.command('EHLO client.test')).lines) ?? '', /AUTH PLAIN LOGIN/);
      assert.equal((await c.command(`AUTH PLAIN ${plain64('alice', 'secret')}`)).code, 235);
      const [, rcpt] = await c.envelope('a@example.org', ['someone@far.example']);
      assert.equal(rcpt!.code, 250, rcpt!.text);
      await c.quit();
    } finally {
      await server.stop();
    }
  });
});

describe('allowInsecureAuth', () => {
  it('without it and without TLS, checkAuth offers nothing; with it, AUTH works in plaintext', async () => {
    const off = await startTestServer({ receiverPath: AUTH });
    try {
      const c = await RawClient.greeted(off.port);
      assert.equal(authLine((await c.command('EHLO client.test')).lines), undefined);
      await c.quit();
    } finally {
      await off.stop();
    }
    const insecure = await startTestServer({ receiverPath: AUTH, allowInsecureAuth: true });
    try {
      const c = await RawClient.greeted(insecure.port);
      assert.match(authLine((await c.command('EHLO client.test')).lines) ?? '', /AUTH PLAIN LOGIN/);
      const r = await c.command(`AUTH PLAIN ${plain64('alice', 'secret')}`);
      assert.equal(r.code, 235, r.text);
      const [, rcpt] = await c.envelope('a@example.org', ['someone@far.example']);
      assert.equal(rcpt!.code, 250, 'session.user reached checkRcptTo');
      await c.quit();
    } finally {
      await insecure.stop();
    }
  });
});
