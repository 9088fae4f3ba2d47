/** Authentication's small parts: flags and options, the forged-header scan, the answer cache, reading a stored head. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { headedStream, materialize, readHeaded, spliceInline } from '../src/core/head.ts';
import { parseServeArgs } from '../src/main/cli.ts';
import { OptionError, resolveOptions } from '../src/main/options.ts';
import { authservId, forgedRanges, headOf } from '../src/workers/auth-header.ts';
import { Authenticator } from '../src/workers/auth.ts';
import { AuthDns } from '../src/workers/dns.ts';
import { startDns } from './helpers/dns.ts';

describe('authentication flags and options', () => {
  it('--auth on|off, --dmarc-reject, --dns-servers, the two time limits', () => {
    assert.deepEqual(
      (({ auth, dmarcReject, dnsServers, authDnsTimeout, authTimeout }) => ({ auth, dmarcReject, dnsServers, authDnsTimeout, authTimeout }))(
        parseServeArgs(['--auth', 'off', '--dmarc-reject', '--dns-servers', '127.0.0.1:5353, [::1]:53', '--auth-dns-timeout', '700', '--auth-timeout', '3000']) as never),
      { auth: false, dmarcReject: true, dnsServers: ['127.0.0.1:5353', '[::1]:53'], authDnsTimeout: 700, authTimeout: 3000 },
    );
    assert.throws(() => parseServeArgs(['--auth', 'maybe']), /--auth: expected on or off, got "maybe"/);
    const defaults = resolveOptions({});
    assert.deepEqual([defaults.auth, defaults.dmarcReject, defaults.dnsServers, defaults.authDnsTimeout, defaults.authTimeout], [true, false, [], 2000, 5000]);
  });

  it('a DNS server that is not IP[:PORT] is refused, naming the option', () => {
    for (const ok of ['192.0.2.1', '192.0.2.1:5353', '::1', '[::1]:53', '2001:db8::1']) assert.doesNotThrow(() => resolveOptions({ dnsServers: [ok] }), ok);
    for (const bad of ['dns.example', '192.0.2.1:0', '192.0.2.1:99999', '[::1', '1.2.3:53']) {
      assert.throws(() => resolveOptions({ dnsServers: [bad] }), (e: unknown) => e instanceof OptionError && e.option === 'dnsServers' && e.message.includes(JSON.stringify(bad)), bad);
    }
  });
});

describe('forged Authentication-Results headers', () => {
  it('the authserv-id: a token or a quoted string, after comments, any case', () => {
    assert.equal(authservId(' mx.example.net; spf=pass'), 'mx.example.net');
    assert.equal(authservId(' (comment (nested)) "MX.Example.NET" 1; none'), 'mx.example.net');
    assert.equal(authservId('\r\n\tmx.example.net;\r\n dkim=pass'), 'mx.example.net');
  });

  it('finds whole fields (folded lines too) with our id in the header section only', () => {
    const ours = 'Authentication-Results: mx.example.net;\r\n\tspf=pass\r\n';
    const other = 'Authentication-Results: mx.other.example; spf=pass\r\n';
    const head = `Received: x\r\n${ours}${other}Subject: s\r\n\r\n`;
    const bytes = Buffer.from(`${head}Authentication-Results: mx.example.net; in the body\r\n`);
    const start = 'Received: x\r\n'.length;
    assert.deepEqual(forgedRanges(bytes, 'MX.example.net'), [[start, start + ours.length]]);
    const h = headOf('Authentication-Results: mx.example.net; none\r\n', bytes, forgedRanges(bytes, 'mx.example.net'));
    assert.equal(Buffer.from(h.bytes).toString(), 'Authentication-Results: mx.example.net; none\r\nReceived: x\r\n');
    assert.equal(h.cut, start + ours.length);
    assert.equal(spliceInline(bytes, h).toString(), `Authentication-Results: mx.example.net; none\r\nReceived: x\r\n${other}Subject: s\r\n\r\nAuthentication-Results: mx.example.net; in the body\r\n`);
  });
});

describe('a spooled message with a head', () => {
  it('reads the same as a buffer, a stream and (once written in) a file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-head-'));
    try {
      const file = join(dir, 'm.eml');
      const stored = Buffer.from(`Received: x\r\nAuthentication-Results: h; forged\r\nSubject: s\r\n\r\n${'b'.repeat(3_000_000)}\r\n`);
      await writeFile(file, stored);
      const h = headOf('Authentication-Results: h; none\r\n', stored, forgedRanges(stored, 'h'));
      const expected = spliceInline(stored, h);
      assert.ok((await readHeaded(file, h)).equals(expected));
      const chunks: Buffer[] = [];
      for await (const c of headedStream(file, h)) chunks.push(c as Buffer);
      assert.ok(Buffer.concat(chunks).equals(expected));
      materialize(file, h, `${file}.tmp`);
      assert.ok((await readFile(file)).equals(expected), 'the file now holds the head');
      materialize(file, h, `${file}.tmp`); // again: nothing changes
      assert.ok((await readHeaded(file, h)).equals(expected), 'and reads the same, without the head twice');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the workers\' DNS', () => {
  it('keeps answers (and "no such name") for a while; a look-up past the message\'s deadline is ETIMEOUT', async () => {
    const dns = await startDns(new Map<string, string[] | 'silent'>([['a.test', ['v=spf1 -all']], ['slow.test', 'silent']]));
    try {
      const resolver = new AuthDns([dns.server], 1500);
      const look = resolver.forMessage(Date.now() + 60_000);
      assert.deepEqual(await look('a.test', 'TXT'), [['v=spf1 -all']]);
      assert.deepEqual(await look('A.TEST', 'TXT'), [['v=spf1 -all']]);
      await assert.rejects(look('none.test', 'TXT'), { code: 'ENOTFOUND' });
      await assert.rejects(look('none.test', 'TXT'), { code: 'ENOTFOUND' });
      assert.deepEqual(dns.queries, ['TXT a.test', 'TXT none.test'], 'the second of each came from the cache');
      await assert.rejects(look('slow.test', 'TXT'), { code: 'ETIMEOUT' });
      await assert.rejects(resolver.forMessage(Date.now() - 1)('b.test', 'TXT'), { code: 'ETIMEOUT' });
      assert.ok(!dns.queries.includes('TXT b.test'), 'nothing is asked past the deadline');
    } finally {
      await dns.close();
    }
  });
});

describe('the authenticator', () => {
  it('an IPv4 client on a dual-stack socket (::ffff:a.b.c.d) matches ip4 SPF records', async () => {
    const dns = await startDns(new Map([['v4.test', ['v=spf1 ip4:127.0.0.1 -all']]]));
    try {
      const a = new Authenticator({ dnsServers: [dns.server], lookupTimeout: 1500, messageTimeout: 5000, dmarcReject: false }, 'mx.test');
      const stored = Buffer.from('Received: x\r\nFrom: a@v4.test\r\nSubject: s\r\n\r\nbody\r\n');
      const run = (peerAddr: string) => a.run({ inline: stored, file: '/nonexistent', traceLength: 13, peerAddr, helo: 'client.test', from: 'a@v4.test' });
      assert.equal((await run('::ffff:127.0.0.1')).auth.spf.result, 'pass');
      assert.equal((await run('::ffff:192.0.2.1')).auth.spf.result, 'fail');
    } finally {
      await dns.close();
    }
  });
});
