/**
 * The PROXY protocol (v1 and v2) from the balancers of `proxyFrom`, over raw
 * sockets: each header form the test builds with proxy-protocol-js (the same
 * library that parses it, but the bytes are the protocol's), split across
 * packets, LOCAL and UNKNOWN, IPv6 sources, no header or none in time from a
 * listed balancer, and a header from an address that is not listed. The
 * stored message and its Received header show the client's address.
 * test/proxy-haproxy.test.ts does it behind a real HAProxy.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import * as pp from 'proxy-protocol-js';
import { parseServeArgs } from '../src/main/cli.ts';
import { checkProxyFrom, proxyMatcher } from '../src/main/proxy-from.ts';
import { resolveOptions } from '../src/main/options.ts';
import { looksLikeProxyHeader, parseProxyHeader } from '../src/patch/proxy-header.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { runCli } from './helpers/cli.ts';
import { refusals } from './helpers/logs.ts';
import { storedMessage } from './helpers/queue.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

const v1 = (proto: 'TCP4' | 'TCP6', src: string, dst: string, sport: number, dport: number): Buffer =>
  Buffer.from(new pp.V1ProxyProtocol(pp.INETProtocol[proto], new pp.Peer(src, sport), new pp.Peer(dst, dport)).build(), 'latin1');

const v2inet = (command: pp.Command, src: number[], dst: number[], sport: number, dport: number): Buffer =>
  Buffer.from(new pp.V2ProxyProtocol(command, pp.TransportProtocol.STREAM,
    new pp.IPv4ProxyAddress(pp.IPv4Address.createFrom(src), sport, pp.IPv4Address.createFrom(dst), dport)).build());

const v2inet6 = (src: number[], dst: number[], sport: number, dport: number): Buffer =>
  Buffer.from(new pp.V2ProxyProtocol(pp.Command.PROXY, pp.TransportProtocol.STREAM,
    new pp.IPv6ProxyAddress(pp.IPv6Address.createFrom(src), sport, pp.IPv6Address.createFrom(dst), dport)).build());

/** 2001:db8::5 */
const DOC6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
const LOOP6 = [...Array(15).fill(0), 1];

function servers() {
  const started: TestServer[] = [];
  after(async () => { for (const s of started) await s.stop(); });
  return async (options: Parameters<typeof startTestServer>[0]): Promise<TestServer> => {
    const s = await startTestServer(options);
    started.push(s);
    return s;
  };
}

/** A raw connection that writes `header` (in pieces, each a write of its own after the server read the last) and then speaks SMTP. */
async function throughBalancer(port: number, header: Buffer, pieces = 1, localAddress?: string): Promise<RawClient> {
  const c = await RawClient.connect(port, '127.0.0.1', localAddress);
  const size = Math.ceil(header.length / pieces);
  for (let i = 0; i < header.length; i += size) {
    c.write(header.subarray(i, i + size));
    // a pause between pieces, so they reach the server as separate reads (not asserted: any split is valid)
    if (i + size < header.length) await new Promise((r) => setTimeout(r, 5));
  }
  return c;
}

async function sendOne(c: RawClient, subject: string): Promise<string> {
  const greeting = await c.read();
  assert.equal(greeting.code, 220, greeting.text);
  assert.equal((await c.command('EHLO client.test')).code, 250);
  const id = queuedId(await c.send('a@example.org', ['b@localhost'], `Subject: ${subject}\r\n\r\nx\r\n`));
  await c.quit();
  return id;
}

describe('PROXY protocol from a --proxy-from balancer', () => {
  const start = servers();
  const refused = refusals();
  let server: TestServer;

  it('v1 TCP4: the session, the stored message and its Received header see the client', async () => {
    server = await start({ proxyFrom: ['127.0.0.0/8'], proxyTimeout: 20_000 });
    const id = await sendOne(await throughBalancer(server.port, v1('TCP4', '192.0.2.7', '198.51.100.1', 40001, 25)), 'v1');
    const stored = (await storedMessage(server.store, id))!;
    assert.equal(stored.record.msg.peerAddr, '192.0.2.7');
    assert.match(stored.bytes.toString('latin1'), /^Received: from client\.test \(\[192\.0\.2\.7\]\)\r\n/);
  });

  it('v2 with an IPv6 source, one byte per packet, and the first command in the header\'s last packet', async () => {
    const header = v2inet6(DOC6, LOOP6, 40002, 25);
    const c = await throughBalancer(server.port, header.subarray(0, -1), header.length - 1);
    c.write(Buffer.concat([header.subarray(-1), Buffer.from('NOOP\r\n')]));
    assert.equal((await c.read()).code, 220);
    assert.equal((await c.read()).code, 250, 'the NOOP sent with the header is answered, after the greeting');
    assert.equal((await c.command('EHLO client.test')).code, 250);
    const id = queuedId(await c.send('a@example.org', ['b@localhost'], 'Subject: v2\r\n\r\nx\r\n'));
    await c.quit();
    const stored = (await storedMessage(server.store, id))!;
    assert.equal(stored.record.msg.peerAddr, '2001:db8::5');
    assert.match(stored.bytes.toString('latin1'), /^Received: from client\.test \(\[2001:db8::5\]\)\r\n/);
  });

  it('v2 IPv4 and v1 TCP6 (an IPv4-mapped v2 source reads as IPv4)', async () => {
    const a = await sendOne(await throughBalancer(server.port, v2inet(pp.Command.PROXY, [203, 0, 113, 9], [127, 0, 0, 1], 40003, 25), 3), 'v2-4');
    assert.equal(server.store.get(a)!.msg.peerAddr, '203.0.113.9');
    const b = await sendOne(await throughBalancer(server.port, v1('TCP6', '2001:db8::6', '::1', 40004, 25), 2), 'v1-6');
    assert.equal(server.store.get(b)!.msg.peerAddr, '2001:db8::6');
    const mapped = [...Array(10).fill(0), 0xff, 0xff, 198, 51, 100, 20];
    const c = await sendOne(await throughBalancer(server.port, v2inet6(mapped, LOOP6, 40005, 25)), 'mapped');
    assert.equal(server.store.get(c)!.msg.peerAddr, '198.51.100.20');
  });

  it('v2 LOCAL (a health check) and v1 UNKNOWN keep the connection\'s own address', async () => {
    const a = await sendOne(await throughBalancer(server.port, v2inet(pp.Command.LOCAL, [0, 0, 0, 0], [0, 0, 0, 0], 0, 0)), 'local');
    assert.equal(server.store.get(a)!.msg.peerAddr, '127.0.0.1');
    const b = await sendOne(await throughBalancer(server.port, Buffer.from('PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 1 2\r\n')), 'unknown');
    assert.equal(server.store.get(b)!.msg.peerAddr, '127.0.0.1');
    assert.deepEqual(refused, []);
  });

  it('a balancer on IPv6 (::1 listed), passing on an IPv4 client', async () => {
    const six = await start({ host: '::1', proxyFrom: ['::1/128'] });
    const c = await RawClient.connect(six.port, '::1');
    c.write(v2inet(pp.Command.PROXY, [192, 0, 2, 44], [127, 0, 0, 1], 40006, 25));
    const id = await sendOne(c, 'six');
    assert.equal(six.store.get(id)!.msg.peerAddr, '192.0.2.44');
  });

  it('no header, a bad one, or none in time from a listed address: 421 and closed, a "proxy" refusal', async () => {
    const count = server.store.count();
    for (const [bytes, reply] of [
      [Buffer.from('EHLO client.test\r\n'), /^421 4\.7\.0 test\.invalid Expected a PROXY protocol header$/],
      [Buffer.from('PROXY TCP4 999.0.0.1 127.0.0.1 1 25\r\n'), /^421 4\.7\.0 /],
      [Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`), /^421 4\.7\.0 /],
      [Buffer.from(v2inet(pp.Command.PROXY, [1, 2, 3, 4], [5, 6, 7, 8], 1, 2).map((b, i) => (i === 12 ? 0x31 : b))), /^421 4\.7\.0 /],
    ] as const) {
      const c = await throughBalancer(server.port, bytes);
      const replies = await c.readUntilClosed();
      assert.equal(replies.length, 1, JSON.stringify(replies));
      assert.match(replies[0]!.text, reply);
    }
    assert.equal(refused.length, 4);
    assert.ok(refused.every((e) => e.reason === 'proxy' && e.remoteAddress === '127.0.0.1' && e.reply?.startsWith('421 4.7.0')));
    refused.length = 0;
    assert.equal(server.store.count(), count);
  });

  it('a header that never comes: 421 4.4.2 after proxyTimeout', async () => {
    const quick = await start({ proxyFrom: ['127.0.0.1'], proxyTimeout: 200 });
    const c = await throughBalancer(quick.port, Buffer.from('PROXY TCP4 1.2.3.4')); // half a header, then silence
    const replies = await c.readUntilClosed(15_000);
    assert.deepEqual(replies.map((r) => r.text), ['421 4.4.2 test.invalid No PROXY protocol header in time']);
    assert.deepEqual(refused.map((e) => [e.reason, e.reply]), [['proxy', '421 4.4.2 test.invalid No PROXY protocol header in time']]);
    refused.length = 0;
  });
});

describe('a PROXY header from an address not in --proxy-from', () => {
  const start = servers();
  const refused = refusals();

  it('is refused once greeted (v1 and v2), nothing stored; a plain session from there is served', async () => {
    const server = await start({ proxyFrom: ['192.0.2.0/24', '2001:db8::/32'] });
    for (const header of [v1('TCP4', '192.0.2.7', '127.0.0.1', 40001, 25), v2inet(pp.Command.PROXY, [192, 0, 2, 7], [127, 0, 0, 1], 40001, 25)]) {
      const c = await throughBalancer(server.port, Buffer.concat([header, Buffer.from('EHLO client.test\r\nMAIL FROM:<a@example.org>\r\n')]));
      const replies = await c.readUntilClosed();
      assert.deepEqual(replies.map((r) => r.text), ['220 test.invalid ESMTP smtp-receive', '421 4.7.0 PROXY protocol header not accepted from this address']);
    }
    assert.deepEqual(refused.map((e) => [e.reason, e.remoteAddress]), [['proxy', '127.0.0.1'], ['proxy', '127.0.0.1']]);
    const id = await sendOne(await RawClient.connect(server.port), 'plain');
    assert.equal(server.store.get(id)!.msg.peerAddr, '127.0.0.1');
    assert.equal(server.store.count(), 1);
  });

  it('during a greeting pause: refused at once as a PROXY header, not as an early talker', async () => {
    const server = await start({ proxyFrom: ['192.0.2.0/24'], greetPause: 300 });
    const c = await throughBalancer(server.port, v2inet(pp.Command.PROXY, [192, 0, 2, 7], [127, 0, 0, 1], 40001, 25));
    const replies = await c.readUntilClosed();
    assert.deepEqual(replies.map((r) => r.text), ['421 4.7.0 PROXY protocol header not accepted from this address']);
    assert.equal(refused.at(-1)!.reason, 'proxy');
  });

  it('without --proxy-from at all, too', async () => {
    const server = await start({});
    const c = await throughBalancer(server.port, v1('TCP4', '192.0.2.7', '127.0.0.1', 40001, 25));
    const replies = await c.readUntilClosed();
    assert.equal(replies.at(-1)!.code, 421);
    assert.equal(refused.at(-1)!.reason, 'proxy');
  });
});

describe('--proxy-from entries', () => {
  it('addresses and CIDR ranges, IPv4 and IPv6; a dual-stack peer ::ffff:a.b.c.d matches its IPv4 entry', () => {
    const m = proxyMatcher(['10.1.0.0/16', '192.0.2.7', '2001:db8::/32', '::1']);
    for (const yes of ['10.1.2.3', '::ffff:10.1.255.255', '192.0.2.7', '2001:db8:1::9', '::1']) assert.equal(m(yes), true, yes);
    for (const no of ['10.2.0.1', '192.0.2.8', '2001:db9::1', '127.0.0.1', '', undefined, 'localhost']) assert.equal(m(no), false, String(no));
  });

  it('a bad entry is an error naming the option and the entry', () => {
    for (const bad of ['10.0.0.0/33', '::/129', 'example.org', '10.0.0.0/8/1', '10.0.0/8', '1.2.3.4/']) {
      assert.throws(() => checkProxyFrom([bad]), new RegExp(JSON.stringify(bad).replace(/[./[\]]/g, '\\$&')));
      assert.throws(() => resolveOptions({ proxyFrom: [bad] }), /^OptionError: option proxyFrom: /);
    }
    const parsed = parseServeArgs(['--proxy-from', '10.0.0.0/8,192.0.2.7', '--proxy-from', '::1']);
    assert.deepEqual(parsed !== 'help' && parsed.proxyFrom, ['10.0.0.0/8', '192.0.2.7', '::1']);
  });

  it('the CLI names the flag', async () => {
    const r = await runCli(['serve', '--proxy-from', '10.0.0.0/40', '--listen', '127.0.0.1:0']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^smtp-receive: --proxy-from: "10\.0\.0\.0\/40" is not an IP address or a CIDR range/);
  });
});

describe('the header parser', () => {
  it('wants more bytes until a header is whole, then gives its length', () => {
    const h = v2inet6(DOC6, LOOP6, 1, 2);
    for (let n = 0; n < h.length; n++) assert.equal(parseProxyHeader(h.subarray(0, n)).state, 'more', String(n));
    const done = parseProxyHeader(Buffer.concat([h, Buffer.from('EHLO x\r\n')]));
    assert.equal(done.state === 'done' && done.length, h.length);
    assert.equal(looksLikeProxyHeader(Buffer.from('EHLO x\r\n')), false);
    assert.equal(looksLikeProxyHeader(Buffer.from('\r\n')), true, 'a prefix of the v2 signature');
  });
});
