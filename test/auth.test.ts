/**
 * SPF, DKIM, DMARC and ARC verdicts, against a DNS server the test runs on
 * 127.0.0.1 (--dns-servers): no network. Messages are DKIM-signed here with
 * nodemailer and keys made here; the verdicts reach predeliver, deliver and
 * showqueue --json, and the stored message carries our Authentication-Results
 * header, byte-exact, with a forged one (our authserv-id) removed.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import type { MessageAuth } from '../src/core/auth.ts';
import { showqueueCommand } from '../src/main/showqueue.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { startDns, type TestDns } from './helpers/dns.ts';
import { jsonLines } from './helpers/logs.ts';
import { storedMessage } from './helpers/queue.ts';

const RECEIVER = fileURLToPath(new URL('./fixtures/auth-receiver.ts', import.meta.url));
const HOST = 'mx.auth.test';

function dkimKey(): { privateKey: string; record: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  return {
    privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }) as string,
    record: `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`,
  };
}

/** A message built (and DKIM-signed, when asked) by nodemailer, as CRLF bytes. */
async function compose(o: { from: string; text: string; sign?: { domain: string; selector: string; key: string }; headers?: Record<string, string> }): Promise<Buffer> {
  const t = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'windows' });
  const info = await t.sendMail({
    from: o.from, to: 'rcpt@local.test', subject: 'auth test', text: o.text, headers: o.headers,
    dkim: o.sign && { domainName: o.sign.domain, keySelector: o.sign.selector, privateKey: o.sign.key },
  });
  return info.message as Buffer;
}

interface Seen { hook: string; id: string; auth?: MessageAuth; size: number; bodySize: number; agree: boolean; bytes: string }

describe('message authentication (SPF, DKIM, DMARC, ARC)', () => {
  let dns: TestDns;
  let server: TestServer;
  let strict: TestServer;
  let dir: string;
  let seenFile: string;
  const signed = dkimKey();
  const other = dkimKey();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'smtp-receive-auth-'));
    seenFile = join(dir, 'seen.jsonl');
    process.env.AUTH_SEEN = seenFile;
    dns = await startDns(new Map<string, string[] | 'silent'>([
      ['signed.test', ['v=spf1 ip4:127.0.0.1 -all']],
      ['sel._domainkey.signed.test', [signed.record]],
      ['_dmarc.signed.test', ['v=DMARC1; p=reject']],
      ['spf-fail.test', ['v=spf1 ip4:192.0.2.1 -all']],
      ['_dmarc.spf-fail.test', ['v=DMARC1; p=reject']],
      ['softfail.test', ['v=spf1 ip4:192.0.2.1 ~all']],
      ['neutral.test', ['v=spf1 ?all']],
      ['dkim-only.test', ['v=spf1 ip4:192.0.2.1 -all']],
      ['sel._domainkey.dkim-only.test', [other.record]],
      ['_dmarc.dkim-only.test', ['v=DMARC1; p=reject']],
      ['spf-only.test', ['v=spf1 ip4:127.0.0.1 -all']],
      ['_dmarc.spf-only.test', ['v=DMARC1; p=reject']],
      ['slow.test', 'silent'],
      ['_dmarc.slow.test', 'silent'],
    ]));
    const common = {
      receiverPath: RECEIVER, hostname: HOST, domains: ['local.test'], auth: true, dnsServers: [dns.server],
      // generous for a busy machine: only the 'silent' names run into them
      authDnsTimeout: 1500, authTimeout: 4000, inlineMax: 4096,
    };
    server = await startTestServer(common);
    strict = await startTestServer({ ...common, dmarcReject: true, runner: false });
  });
  after(async () => {
    await server?.stop();
    await strict?.stop();
    await dns?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function send(to: TestServer, from: string, raw: Buffer): Promise<{ id?: string; code: number; response: string }> {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: to.port, secure: false, ignoreTLS: true, name: 'client.test' });
    try {
      const info = await t.sendMail({ envelope: { from, to: ['rcpt@local.test'] }, raw });
      return { id: /queued as ([0-9A-Z]+)/.exec(info.response)?.[1], code: 250, response: info.response };
    } catch (err) {
      const e = err as { responseCode?: number; response?: string };
      return { code: e.responseCode ?? 0, response: e.response ?? String(err) };
    } finally {
      t.close();
    }
  }

  async function seen(id: string, hook: string): Promise<Seen> {
    for (let i = 0; i < 200; i++) {
      const text = await readFile(seenFile, 'utf8').catch(() => '');
      const hit = jsonLines<Seen>(text).find((s) => s.id === id && s.hook === hook);
      if (hit) return hit;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${hook} of ${id} not seen`);
  }

  /** Sends, expects a 250, and returns the verdicts predeliver saw (checked against the queue's record). */
  async function verdictsOf(from: string, raw: Buffer): Promise<{ id: string; auth: MessageAuth }> {
    const r = await send(server, from, raw);
    assert.equal(r.code, 250, r.response);
    const p = await seen(r.id!, 'predeliver');
    const stored = (await storedMessage(server.store, r.id!))!;
    assert.deepEqual(stored.record.msg.auth, p.auth, 'the queued message keeps the verdicts predeliver saw');
    return { id: r.id!, auth: p.auth! };
  }

  it('a message DKIM-signed with a published key passes, and DMARC passes through it', async () => {
    const raw = await compose({ from: 'a@signed.test', text: 'hello\n', sign: { domain: 'signed.test', selector: 'sel', key: signed.privateKey } });
    const { auth } = await verdictsOf('a@signed.test', raw);
    assert.deepEqual(auth.dkim, [{ result: 'pass', domain: 'signed.test', selector: 'sel' }]);
    assert.equal(auth.spf.result, 'pass');
    assert.equal(auth.dmarc.result, 'pass');
    assert.equal(auth.dmarc.domain, 'signed.test');
    assert.equal(auth.dmarc.policy, 'reject');
    assert.equal(auth.arc.result, 'none');
  });

  it('a body changed after signing fails DKIM', async () => {
    const raw = await compose({ from: 'a@signed.test', text: 'the amount is 10 EUR\n', sign: { domain: 'signed.test', selector: 'sel', key: signed.privateKey } });
    const changed = Buffer.from(raw.toString('latin1').replace('10 EUR', '99 EUR'), 'latin1');
    const { auth } = await verdictsOf('a@signed.test', changed);
    assert.deepEqual(auth.dkim, [{ result: 'fail', domain: 'signed.test', selector: 'sel', reason: 'body hash did not verify' }]);
  });

  it('a signature whose key is not published is permerror; an unsigned message has no DKIM verdicts (dkim=none)', async () => {
    const gone = await compose({ from: 'a@signed.test', text: 'x\n', sign: { domain: 'signed.test', selector: 'gone', key: signed.privateKey } });
    const a = await verdictsOf('a@signed.test', gone);
    assert.deepEqual(a.auth.dkim, [{ result: 'permerror', domain: 'signed.test', selector: 'gone', reason: 'no key' }]);
    const unsigned = await compose({ from: 'a@neutral.test', text: 'x\n' });
    const b = await verdictsOf('a@neutral.test', unsigned);
    assert.deepEqual(b.auth.dkim, []);
    const stored = (await storedMessage(server.store, b.id))!;
    assert.match(stored.bytes.toString('latin1'), /^Authentication-Results: mx\.auth\.test;\r\n dkim=none \(message not signed\);/);
  });

  it('SPF for the client address 127.0.0.1: pass, fail, softfail, neutral, none', async () => {
    const cases: Array<[string, string]> = [
      ['signed.test', 'pass'], ['spf-fail.test', 'fail'], ['softfail.test', 'softfail'], ['neutral.test', 'neutral'], ['nothing.test', 'none'],
    ];
    for (const [domain, expected] of cases) {
      const { auth } = await verdictsOf(`s@${domain}`, await compose({ from: `s@${domain}`, text: 'x\n' }));
      assert.equal(auth.spf.result, expected, domain);
      assert.equal(auth.spf.domain, domain);
    }
  });

  it('DMARC passes through SPF alignment alone, and through DKIM alignment alone', async () => {
    const spf = await verdictsOf('a@spf-only.test', await compose({ from: 'a@spf-only.test', text: 'x\n' }));
    assert.deepEqual([spf.auth.spf.result, spf.auth.dkim, spf.auth.dmarc.result], ['pass', [], 'pass']);
    const dkim = await verdictsOf('bounce@dkim-only.test', await compose({
      from: 'a@dkim-only.test', text: 'x\n', sign: { domain: 'dkim-only.test', selector: 'sel', key: other.privateKey },
    }));
    assert.equal(dkim.auth.spf.result, 'fail');
    assert.equal(dkim.auth.dkim[0]?.result, 'pass');
    assert.equal(dkim.auth.dmarc.result, 'pass');
  });

  it('DMARC fail with p=reject: accepted and marked by default, 550 5.7.1 with --dmarc-reject', async () => {
    const raw = await compose({ from: 'a@spf-fail.test', text: 'phish\n' });
    const { auth } = await verdictsOf('a@spf-fail.test', raw);
    assert.deepEqual(auth.dmarc, { result: 'fail', domain: 'spf-fail.test', policy: 'reject', reason: 'p=REJECT arc=none' });
    const before = strict.store.count();
    const r = await send(strict, 'a@spf-fail.test', raw);
    assert.equal(r.code, 550, r.response);
    assert.match(r.response, /^550 5\.7\.1 /);
    assert.equal(strict.store.count(), before, 'nothing queued');
    // the same server accepts what passes
    const ok = await send(strict, 'a@spf-only.test', await compose({ from: 'a@spf-only.test', text: 'x\n' }));
    assert.equal(ok.code, 250, ok.response);
  });

  it('a DNS look-up that times out gives temperror, never a refusal (also with --dmarc-reject)', async () => {
    const raw = await compose({ from: 'a@slow.test', text: 'x\n' });
    const { auth } = await verdictsOf('a@slow.test', raw);
    assert.equal(auth.spf.result, 'temperror');
    assert.equal(auth.dmarc.result, 'temperror');
    const r = await send(strict, 'a@slow.test', raw);
    assert.equal(r.code, 250, r.response);
    assert.ok(dns.queries.includes('TXT slow.test'), 'the look-up went to our DNS server');
  });

  it('stores our header on top, byte-exact; removes forged ones with our authserv-id, keeps others', async () => {
    const forged = 'Authentication-Results: mx.auth.test; spf=pass smtp.mailfrom=ceo@spf-only.test\r\n';
    const forgedFolded = 'Authentication-Results: (looks real) "MX.Auth.Test";\r\n\tdkim=pass header.d=spf-only.test\r\n';
    const foreign = 'Authentication-Results: mx.elsewhere.test; spf=fail smtp.mailfrom=spf-only.test\r\n';
    const body = 'Subject: forged\r\nFrom: a@spf-only.test\r\nTo: rcpt@local.test\r\n\r\nhello\r\n';
    for (const size of ['inline', 'file'] as const) {
      const pad = size === 'file' ? `${'y'.repeat(70)}\r\n`.repeat(100) : '';
      const raw = Buffer.from(forged + foreign + forgedFolded + body + pad);
      const { id } = await verdictsOf('a@spf-only.test', raw);
      const stored = (await storedMessage(server.store, id))!;
      assert.equal(stored.record.storage, size);
      const ours = 'Authentication-Results: mx.auth.test;\r\n'
        + ' dkim=none (message not signed);\r\n'
        + ' spf=pass (mx.auth.test: domain of a@spf-only.test designates 127.0.0.1 as permitted sender) smtp.mailfrom=a@spf-only.test smtp.helo=client.test;\r\n'
        + ' dmarc=pass (p=REJECT arc=none) header.from=spf-only.test header.d=spf-only.test\r\n';
      const text = stored.bytes.toString('latin1');
      assert.ok(text.startsWith(ours), `our header, byte-exact, on top:\n${text.slice(0, 600)}`);
      const trace = new RegExp(`^Received: from client\\.test \\(\\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby mx\\.auth\\.test \\(smtp-receive\\) with ESMTP id ${id}\\r\\n\\tfor <rcpt@local\\.test>; [^\\r\\n]+\\r\\n`);
      const rest = text.slice(ours.length);
      const m = trace.exec(rest);
      assert.ok(m, `our Received header follows:\n${rest.slice(0, 300)}`);
      assert.equal(rest.slice(m[0].length), foreign + body + pad, 'the message as sent, without the forged headers');
      assert.equal(stored.record.msg.size, stored.bytes.length);
      // predeliver read the same bytes, three ways (buffer, stream, path)
      const p = await seen(id, 'predeliver');
      assert.ok(p.agree, 'buffer, stream and path agree');
      assert.equal(Buffer.from(p.bytes, 'base64').toString('latin1'), text);
      assert.equal(p.size, stored.bytes.length);
      // and deliver too (textFile included: a spooled file gets the header written in)
      const d = await seen(id, 'deliver');
      assert.deepEqual(d.auth, p.auth);
      assert.ok(d.agree, 'deliver: buffer, stream and textFile agree');
      assert.equal(Buffer.from(d.bytes, 'base64').toString('latin1'), text);
      const again = (await storedMessage(server.store, id))!;
      assert.ok(again.bytes.equals(stored.bytes), 'still the same bytes after deliver wrote the header into the file');
    }
  });

  it('showqueue --json shows the verdicts and the stored bytes with our header', async () => {
    const { id, auth } = await verdictsOf('a@signed.test', await compose({
      from: 'a@signed.test', text: 'x\n', sign: { domain: 'signed.test', selector: 'sel', key: signed.privateKey },
    }));
    let out = '';
    const sink = new Writable({ write(chunk, _enc, cb) { out += String(chunk); cb(); } });
    const code = await showqueueCommand(['--queue', server.queueDir, '--json', '--bodies', id], sink as unknown as typeof process.stdout);
    assert.equal(code, 0);
    const entry = JSON.parse(out.trim()) as { auth: MessageAuth; body_b64: string };
    assert.deepEqual(entry.auth, auth);
    assert.match(Buffer.from(entry.body_b64, 'base64').toString('latin1'), /^Authentication-Results: mx\.auth\.test;\r\n dkim=pass header\.i=@signed\.test header\.s=sel /);
  });
});
