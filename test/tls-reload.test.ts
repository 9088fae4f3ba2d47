/**
 * The real CLI with TLS: the implicit-TLS listener (--listen-tls), SIGHUP reloads
 * the key and certificate for new sessions while an open TLS session stays up,
 * a bad new certificate keeps the old one (and the log says why), start-up
 * errors name the flag, and SIGHUP never ends a daemon without TLS.
 */
import assert from 'node:assert/strict';
import { copyFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { runCli, spawnCli, type CliProcess } from './helpers/cli.ts';
import { RawClient, isQueued } from './helpers/smtp.ts';
import { certDir, implicitTls, makeCert, startTls, type TestCert } from './helpers/tls.ts';

const KEEP = fileURLToPath(new URL('./fixtures/keep-queued.ts', import.meta.url));
const BODY = 'Subject: reload\r\n\r\nstill here\r\n';

let tmp: Awaited<ReturnType<typeof certDir>>;
let a: TestCert;
let b: TestCert;
before(async () => {
  tmp = await certDir();
  [a, b] = await Promise.all([makeCert(tmp.dir, 'a', 'a.test.invalid'), makeCert(tmp.dir, 'b', 'b.test.invalid')]);
});
after(() => tmp.rm());

/** Waits (bounded) until the daemon's log matches `re`, counting from `from` characters in. */
async function logged(p: CliProcess, re: RegExp, from: number, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const m = re.exec(p.stderr.slice(from));
    if (m) return m[0];
    if (p.hasExited) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`log did not match ${re} within ${timeoutMs} ms; stderr:\n${p.stderr}`);
}

/** Replaces a file as certificate tools do: write beside it, then rename over it. */
async function replace(path: string, from: string | Buffer): Promise<void> {
  if (typeof from === 'string') await copyFile(from, `${path}.new`);
  else await writeFile(`${path}.new`, from);
  await rename(`${path}.new`, path);
}

describe('serve --tls-key --tls-cert --listen-tls', () => {
  let daemon: CliProcess;
  let port: number;
  let tlsPort: number;
  const keyFile = (): string => join(tmp.dir, 'live.key');
  const certFile = (): string => join(tmp.dir, 'live.crt');

  before(async () => {
    await copyFile(a.keyFile, keyFile());
    await copyFile(a.certFile, certFile());
    daemon = spawnCli(['serve', KEEP, '--listen', '127.0.0.1:0', '--listen-tls', '127.0.0.1:0', '--queue', join(tmp.dir, 'queue'),
      '--no-reverse-dns', '--workers', '1', '--tls-key', keyFile(), '--tls-cert', certFile()]);
    port = (await daemon.ready()).port;
    const m = /listening on 127\.0\.0\.1:(\d+) \(implicit TLS\)/.exec(daemon.stdout);
    assert.ok(m, daemon.stdout);
    tlsPort = Number(m[1]);
  });
  after(() => daemon.kill());

  it('the implicit-TLS listener speaks TLS from the first byte and queues mail (ESMTPS); no STARTTLS there', async () => {
    const { client, socket } = await implicitTls(tlsPort);
    assert.equal(socket.getPeerCertificate().fingerprint256, a.fingerprint);
    const ehlo = await client.command('EHLO client.test');
    assert.ok(!ehlo.lines.some((l) => /STARTTLS/.test(l)), ehlo.text);
    assert.ok(isQueued(await client.send('a@example.org', ['someone@localhost'], BODY)));
    await client.quit();
    // a plaintext client on the TLS port gets no SMTP greeting
    const raw = await RawClient.connect(tlsPort);
    raw.write('EHLO client.test\r\n');
    await assert.rejects(raw.read(3000));
    raw.socket.destroy();
  });

  it('SIGHUP: new sessions get the new certificate, an open TLS session stays up; a bad certificate keeps the old one', async () => {
    const open = await startTls(port);
    assert.equal(open.socket.getPeerCertificate().fingerprint256, a.fingerprint);
    assert.equal((await open.client.command('EHLO client.test')).code, 250);

    await replace(keyFile(), b.keyFile);
    await replace(certFile(), b.certFile);
    let mark = daemon.stderr.length;
    daemon.child.kill('SIGHUP');
    await logged(daemon, /SIGHUP: TLS key and certificate reloaded/, mark);
    const fresh = await startTls(port);
    assert.equal(fresh.socket.getPeerCertificate().fingerprint256, b.fingerprint, 'STARTTLS presents the new certificate');
    await fresh.client.quit();
    const implicit = await implicitTls(tlsPort);
    assert.equal(implicit.socket.getPeerCertificate().fingerprint256, b.fingerprint, 'so does the implicit-TLS listener');
    await implicit.client.quit();

    // the session opened before the reload is still up and still works
    assert.ok(isQueued(await open.client.send('a@example.org', ['someone@localhost'], BODY)));

    // a certificate that does not fit the key: nothing changes, and the log says why
    await replace(certFile(), a.certFile);
    mark = daemon.stderr.length;
    daemon.child.kill('SIGHUP');
    const line = await logged(daemon, /SIGHUP: TLS key and certificate not reloaded.*/, mark);
    assert.match(line, /--tls-cert: the certificate in .*live\.crt does not match the private key/);
    // garbage instead of a certificate
    await replace(certFile(), Buffer.from('not a certificate\n'));
    mark = daemon.stderr.length;
    daemon.child.kill('SIGHUP');
    assert.match(await logged(daemon, /SIGHUP: TLS key and certificate not reloaded.*/, mark), /--tls-cert: .*is not a usable PEM certificate/);
    const after = await startTls(port);
    assert.equal(after.socket.getPeerCertificate().fingerprint256, b.fingerprint, 'still the last good certificate');
    await after.client.quit();
    assert.ok(isQueued(await open.client.send('a@example.org', ['someone@localhost'], BODY)));
    await open.client.quit();
    assert.ok(!daemon.hasExited);
  });
});

describe('serve start-up and SIGHUP without TLS', () => {
  it('an unreadable key or a mismatched pair: exit 2, the message names the flag and the file', async () => {
    const q = join(tmp.dir, 'q-bad');
    const missing = await runCli(['serve', '--queue', q, '--listen', '127.0.0.1:0', '--tls-key', join(tmp.dir, 'nope.key'), '--tls-cert', a.certFile]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /^smtp-receive: --tls-key: cannot read .*nope\.key: ENOENT/m);
    const mismatch = await runCli(['serve', '--queue', q, '--listen', '127.0.0.1:0', '--tls-key', a.keyFile, '--tls-cert', b.certFile]);
    assert.equal(mismatch.code, 2, mismatch.stderr);
    assert.match(mismatch.stderr, /^smtp-receive: --tls-cert: the certificate in .*b\.crt does not match the private key in .*a\.key/m);
    const noTls = await runCli(['serve', '--queue', q, '--listen', '127.0.0.1:0', '--listen-tls', '127.0.0.1:0']);
    assert.equal(noTls.code, 2, noTls.stderr);
    assert.match(noTls.stderr, /--listen-tls: an implicit-TLS listener needs a TLS key and certificate/);
    const usage = await Promise.all([
      runCli(['serve', '--queue', q, '--listen-tls', 'nope']),
      runCli(['serve', '--queue', q, '--listen', '127.0.0.1:0', '--require-tls']),
      runCli(['serve', '--queue', q, '--listen', '127.0.0.1:0', '--tls-cert', a.certFile]),
    ]);
    assert.deepEqual(usage.map((r) => r.code), [2, 2, 2], usage.map((r) => r.stderr).join('\n'));
    assert.match(usage[0]!.stderr, /^smtp-receive: --listen-tls: expected HOST:PORT/m);
    assert.match(usage[1]!.stderr, /^smtp-receive: --require-tls: needs a TLS key and certificate/m);
    assert.match(usage[2]!.stderr, /^smtp-receive: --tls-key: is missing/m);
  });

  it('SIGHUP does not end a daemon without TLS', async () => {
    const p = spawnCli(['serve', KEEP, '--listen', '127.0.0.1:0', '--queue', join(tmp.dir, 'q-plain'), '--no-reverse-dns', '--workers', '1']);
    try {
      const { port } = await p.ready();
      const mark = p.stderr.length;
      p.child.kill('SIGHUP');
      await logged(p, /SIGHUP: no TLS key and certificate to reload/, mark);
      const c = await RawClient.ready(port);
      await c.quit();
      assert.equal((await p.signal('SIGTERM')).code, 0);
    } finally {
      await p.kill();
    }
  });
});
