/**
 * STARTTLS with a real TLS client: offered only with a key and certificate, the
 * session works inside TLS, the Received header records it, pipelined plaintext
 * behind STARTTLS is never run inside TLS, --require-tls, and old TLS refused.
 */
import assert from 'node:assert/strict';
import { createServer as tlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { RawClient, isQueued, queuedId } from './helpers/smtp.ts';
import { storedMessage } from './helpers/queue.ts';
import { certDir, handshake, makeCert, startTls, type TestCert } from './helpers/tls.ts';

const BODY = 'Subject: tls\r\n\r\nover TLS\r\n';

let tmp: Awaited<ReturnType<typeof certDir>>;
let cert: TestCert;

before(async () => {
  tmp = await certDir();
  cert = await makeCert(tmp.dir, 'server');
});
after(() => tmp.rm());

describe('without a key and certificate', () => {
  it('STARTTLS is neither offered nor accepted', async () => {
    const server = await startTestServer();
    try {
      const c = await RawClient.greeted(server.port);
      const ehlo = await c.command('EHLO client.test');
      assert.ok(!ehlo.lines.some((l) => /STARTTLS/.test(l)), ehlo.text);
      assert.equal((await c.command('STARTTLS')).code, 500);
      await c.quit();
    } finally {
      await server.stop();
    }
  });
});

describe('STARTTLS', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ tlsKey: cert.keyFile, tlsCert: cert.certFile });
  });
  after(() => server.stop());

  it('is offered, presents the certificate, and a message sent inside TLS is queued with the TLS recorded', async () => {
    const { client, socket, ehlo } = await startTls(server.port);
    assert.ok(ehlo.some((l) => /^250[- ]STARTTLS$/.test(l)), ehlo.join('\n'));
    assert.equal(socket.getPeerCertificate().fingerprint256, cert.fingerprint);
    const protocol = socket.getProtocol()!;
    const cipher = socket.getCipher().name;
    assert.ok(protocol === 'TLSv1.3' || protocol === 'TLSv1.2', protocol);
    const again = await client.command('EHLO client.test');
    assert.equal(again.code, 250);
    assert.ok(!again.lines.some((l) => /STARTTLS/.test(l)), 'not offered again inside TLS');
    assert.equal((await client.command('STARTTLS')).code, 503);
    const r = await client.send('a@example.org', ['someone@localhost'], BODY);
    assert.ok(isQueued(r), r.text);
    await client.quit();
    const stored = await storedMessage(server.store, queuedId(r));
    const text = stored!.bytes.toString('latin1');
    assert.ok(text.includes(`\r\n\t(using ${protocol} with cipher ${cipher})\r\n`), text);
    assert.match(text, / with ESMTPS id /);
  });

  it('a plaintext session has no TLS in its Received header (with ESMTP)', async () => {
    const c = await RawClient.ready(server.port);
    const r = await c.send('a@example.org', ['someone@localhost'], BODY);
    await c.quit();
    const text = (await storedMessage(server.store, queuedId(r)))!.bytes.toString('latin1');
    assert.ok(!text.includes('(using '), text);
    assert.match(text, / with ESMTP id /);
  });

  it('commands pipelined in plaintext behind STARTTLS are discarded, never answered inside TLS', async () => {
    const plain = await RawClient.ready(server.port);
    // one write: STARTTLS and, behind it, what a man in the middle would inject
    plain.write('STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\nXYZZY\r\n');
    const ready = await plain.read();
    assert.equal(ready.code, 220, ready.text);
    const socket = await handshake({ socket: plain.socket });
    const c = RawClient.over(socket);
    // the first reply inside TLS answers our EHLO, not an injected command
    const ehlo = await c.command('EHLO client.test');
    assert.equal(ehlo.code, 250, ehlo.text);
    assert.ok(ehlo.lines.length > 1 && ehlo.lines[0]!.startsWith('250-'), `an EHLO reply: ${ehlo.text}`);
    // no MAIL was run: a new one is not "nested"
    const mail = await c.command('MAIL FROM:<a@example.org>');
    assert.equal(mail.code, 250, mail.text);
    assert.equal((await c.command('RSET')).code, 250);
    await c.quit();
  });

  it('a session that began in plaintext must say EHLO again inside TLS (state from before TLS is forgotten)', async () => {
    const { client } = await startTls(server.port);
    const mail = await client.command('MAIL FROM:<a@example.org>');
    assert.equal(mail.code, 503, mail.text);
    await client.quit();
  });

  it('TLS 1.0 and 1.1 are refused', async () => {
    // the same client completes a TLS 1.1 handshake with a server that allows it: the probe can succeed
    const permissive = tlsServer({ key: cert.key, cert: cert.cert, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) => s.end());
    await new Promise<void>((ok) => permissive.listen(0, '127.0.0.1', ok));
    const old = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;
    try {
      const s = await handshake({ host: '127.0.0.1', port: (permissive.address() as AddressInfo).port, ...old });
      assert.equal(s.getProtocol(), 'TLSv1.1');
      s.destroy();
    } finally {
      permissive.close();
    }
    for (const maxVersion of ['TLSv1', 'TLSv1.1'] as const) {
      const plain = await RawClient.ready(server.port);
      assert.equal((await plain.command('STARTTLS')).code, 220);
      await assert.rejects(handshake({ socket: plain.socket, ...old, maxVersion }), /protocol version|unsupported protocol/i);
      plain.socket.destroy();
    }
  });
});

describe('--require-tls', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ tlsKey: cert.keyFile, tlsCert: cert.certFile, requireTls: true });
  });
  after(() => server.stop());

  it('MAIL before STARTTLS gets 530 5.7.0; after STARTTLS the message is queued', async () => {
    const plain = await RawClient.ready(server.port);
    const r = await plain.command('MAIL FROM:<a@example.org>');
    assert.equal(r.code, 530, r.text);
    assert.match(r.text, /^530 5\.7\.0 /);
    await plain.quit();
    const { client } = await startTls(server.port);
    assert.equal((await client.command('EHLO client.test')).code, 250);
    assert.ok(isQueued(await client.send('a@example.org', ['someone@localhost'], BODY)));
    await client.quit();
  });
});

describe('start-up errors name the flag and the file', () => {
  it('an unreadable key, a certificate that is not one, a key and certificate that do not match', async () => {
    const other = await makeCert(tmp.dir, 'other');
    const missing = `${tmp.dir}/missing.key`;
    await assert.rejects(startTestServer({ tlsKey: missing, tlsCert: cert.certFile }),
      (err: Error) => err.name === 'OptionError' && /^option tlsKey: cannot read .*missing\.key/.test(err.message));
    await assert.rejects(startTestServer({ tlsKey: cert.keyFile, tlsCert: cert.keyFile }),
      (err: Error) => /^option tlsCert: .*server\.key is not a usable PEM certificate/.test(err.message));
    await assert.rejects(startTestServer({ tlsKey: cert.keyFile, tlsCert: other.certFile }),
      (err: Error) => /^option tlsCert: the certificate in .*other\.crt does not match the private key in .*server\.key/.test(err.message));
    await assert.rejects(startTestServer({ tlsKey: cert.keyFile }), /option tlsCert: is missing/);
    await assert.rejects(startTestServer({ requireTls: true }), /option requireTls: needs a TLS key and certificate/);
  });
});

