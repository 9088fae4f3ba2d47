/**
 * --max-clients-per-ip counts an IPv6 client by its prefix (--ipv6-prefix-length,
 * /64 by default), an IPv4 client (IPv4-mapped IPv6 included) by its address:
 * the grouping function (src/main/client-key.ts), the option and flag, and real
 * SMTP over loopback — from ::1 itself, and from addresses a PROXY header gives.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as pp from 'proxy-protocol-js';
import { parseServeArgs } from '../src/main/cli.ts';
import { clientKey, formatIPv6, parseIPv6 } from '../src/main/client-key.ts';
import { OptionError, resolveOptions } from '../src/main/options.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { runCli } from './helpers/cli.ts';
import { refusals, until } from './helpers/logs.ts';
import { RawClient } from './helpers/smtp.ts';

/** Whether this machine can listen on the IPv6 loopback (a container may have no IPv6 at all). */
const ipv6Loopback = await new Promise<boolean>((resolve) => {
  const probe = createServer();
  probe.once('error', () => resolve(false));
  probe.listen(0, '::1', () => probe.close(() => resolve(true)));
});

const perRange = (range: string): string => `421 4.7.0 Too many connections from ${range}, try again later`;
const perAddress = '421 4.7.0 Too many connections from your address, try again later';

describe('clientKey: the client an address counts as', () => {
  it('addresses in one /64 share a key, however they are spelled; other /64s do not', () => {
    for (const a of ['2001:db8:1:2::5', '2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:DB8:1:2:0:0:0:1', '2001:0db8:0001:0002::9', '2001:db8:1:2::']) {
      assert.equal(clientKey(a, 64), '2001:db8:1:2::/64', a);
    }
    for (const a of ['2001:db8:1:3::5', '2001:db8:1:1::5', '2001:db8::5', '2001:db9:1:2::5']) assert.notEqual(clientKey(a, 64), '2001:db8:1:2::/64', a);
    assert.equal(clientKey('2001:db8:1:3::5', 64), '2001:db8:1:3::/64');
  });

  it('other lengths, on and off a group boundary; ::, ::1', () => {
    assert.equal(clientKey('2001:db8:1:2f::1', 48), '2001:db8:1::/48');
    assert.equal(clientKey('2001:db8:1:2f::1', 56), '2001:db8:1::/56');
    assert.equal(clientKey('2001:db8:1:2f::1', 60), '2001:db8:1:20::/60');
    assert.equal(clientKey('2001:db8:1:2f::1', 1), '::/1');
    assert.equal(clientKey('8001:db8::1', 1), '8000::/1');
    assert.equal(clientKey('1:2:3:4:5:6:7:9', 127), '1:2:3:4:5:6:7:8/127');
    assert.equal(clientKey('::1', 64), '::/64');
    assert.equal(clientKey('::', 64), '::/64');
    assert.equal(clientKey('1:0:0:2:0:0:0:3', 112), '1:0:0:2::/112', 'the longest run of zeros is ::');
    assert.equal(clientKey('1:0:0:2:3:0:0:4', 128), '1::2:3:0:0:4', 'the first of two equal runs is ::');
  });

  it('/128 is per address, canonical (RFC 5952)', () => {
    assert.equal(clientKey('2001:db8:1:2::5', 128), '2001:db8:1:2::5');
    assert.notEqual(clientKey('2001:db8:1:2::6', 128), clientKey('2001:db8:1:2::5', 128));
    assert.equal(clientKey('2001:0DB8:0:0:1:0:0:5', 128), '2001:db8::1:0:0:5');
    assert.equal(clientKey('::1', 128), '::1');
    assert.equal(clientKey('2001:db8:0:1:1:1:1:1', 128), '2001:db8:0:1:1:1:1:1', 'one zero group stays a 0');
  });

  it('IPv4 is per address; IPv4-mapped IPv6, in any spelling, is its IPv4 address (::a.b.c.d, compatible, is not)', () => {
    assert.equal(clientKey('192.0.2.7', 64), '192.0.2.7');
    assert.notEqual(clientKey('192.0.2.8', 64), clientKey('192.0.2.7', 64));
    for (const a of ['::ffff:192.0.2.7', '::FFFF:c000:0207', '0:0:0:0:0:ffff:192.0.2.7', '::ffff:192.0.2.7%eth0']) {
      for (const length of [1, 64, 128]) assert.equal(clientKey(a, length), '192.0.2.7', `${a} /${length}`);
    }
    assert.equal(clientKey('::192.0.2.7', 128), '::c000:207');
    assert.equal(clientKey('64:ff9b::192.0.2.7', 96), '64:ff9b::/96');
  });

  it('a zone id stays with its network (one link-local /64 per interface), as RFC 4007 writes it', () => {
    assert.equal(clientKey('fe80::1%eth0', 64), 'fe80::%eth0/64');
    assert.equal(clientKey('fe80::2:3%eth0', 64), 'fe80::%eth0/64');
    assert.notEqual(clientKey('fe80::1%eth1', 64), clientKey('fe80::1%eth0', 64));
    assert.equal(clientKey('fe80::1%eth0', 128), 'fe80::1%eth0');
    assert.equal(clientKey('fe80::1%2', 10), 'fe80::%2/10');
  });

  it('only a range has a /; what is not an IP address is its own key', () => {
    for (const a of ['', 'localhost', '1::2::3', '192.0.2.256', '2001:db8::/64', '::ffff:1.2.3']) assert.equal(clientKey(a, 64), a, JSON.stringify(a));
    assert.ok(!clientKey('2001:db8::1', 128).includes('/'));
  });

  it('parse then format matches the WHATWG URL serializer (RFC 5952) on many addresses', () => {
    let seed = 7;
    const random = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
    for (let i = 0; i < 2000; i++) {
      // mostly zero groups, so that runs of every length and position come up
      const groups = Array.from({ length: 8 }, () => (random(3) === 0 ? random(0x10000) : 0));
      const full = groups.map((g) => g.toString(16).padStart(random(2) ? 4 : 1, '0')).join(':');
      const expected = new URL(`http://[${full}]/`).hostname.slice(1, -1);
      assert.deepEqual(parseIPv6(full)?.groups, groups, full);
      assert.equal(formatIPv6(groups), expected, full);
      // and its compressed form parses back to the same groups
      assert.deepEqual(parseIPv6(expected)?.groups, groups, expected);
    }
  });
});

describe('ipv6PrefixLength and --ipv6-prefix-length', () => {
  it('1 to 128, default 64; other values are an error naming the option', () => {
    assert.equal(resolveOptions({}).ipv6PrefixLength, 64);
    for (const n of [1, 48, 128]) assert.equal(resolveOptions({ ipv6PrefixLength: n }).ipv6PrefixLength, n);
    for (const bad of [0, 129, 64.5, -1, '64' as unknown as number]) {
      assert.throws(() => resolveOptions({ ipv6PrefixLength: bad }), (e: unknown) => e instanceof OptionError && e.option === 'ipv6PrefixLength'
        && /^option ipv6PrefixLength: must be a whole number from 1 to 128/.test(e.message));
    }
    const o = parseServeArgs(['--ipv6-prefix-length', '56']);
    assert.equal(o !== 'help' && o.ipv6PrefixLength, 56);
  });

  it('the CLI names the flag', async () => {
    const r = await runCli(['serve', '--ipv6-prefix-length', '129', '--listen', '127.0.0.1:0']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^smtp-receive: --ipv6-prefix-length: must be a whole number from 1 to 128, got 129\n/);
  });
});

describe('over the IPv6 loopback', () => {
  const refused = refusals();

  it('with --max-clients-per-ip 1, a second connection from ::1 is refused, naming its /64', { skip: ipv6Loopback ? false : 'no IPv6 loopback (::1) on this machine' }, async () => {
    const lines: string[] = [];
    const server = await startTestServer({
      host: '::1', maxClientsPerIp: 1, logFormat: 'json', logLevel: 'info', logStream: { write: (l: string) => lines.push(l) },
    });
    try {
      const first = await RawClient.connect(server.port, '::1');
      assert.equal((await first.read()).code, 220);
      const second = await RawClient.connect(server.port, '::1');
      assert.equal((await second.read()).text, perRange('::/64'));
      assert.ok(await second.closedByServer());
      assert.equal((await first.command('NOOP')).code, 250, 'the first session goes on');
      await first.quit();
      assert.deepEqual(refused, [{ reason: 'per-client', remoteAddress: '::1', reply: perRange('::/64'), prefix: '::/64' }]);
      await until(() => lines.some((l) => l.includes('"event":"refused"')), 'the refused line', 10_000, () => lines.join(''));
      const line = JSON.parse(lines.find((l) => l.includes('"event":"refused"'))!) as Record<string, unknown>;
      assert.equal(line.prefix, '::/64');
      assert.equal(line.peer, '::1');
      assert.equal(line.msg, `connection refused peer=[::1] prefix=::/64 reason=per-client: ${perRange('::/64')}`);
    } finally {
      await server.stop();
    }
  });
});

/** A PROXY v1 or v2 header from the "balancer" (this process on 127.0.0.1) for the client at `src`. */
function header(version: 1 | 2, src: string): Buffer {
  const six = src.includes(':');
  if (version === 1) {
    return Buffer.from(new pp.V1ProxyProtocol(pp.INETProtocol[six ? 'TCP6' : 'TCP4'], new pp.Peer(src, 40000),
      new pp.Peer(six ? '2001:db8:ffff::1' : '192.0.2.1', 25)).build(), 'latin1');
  }
  const bytes = (address: string): number[] => parseIPv6(address)!.groups.flatMap((g) => [g >> 8, g & 0xff]);
  const address = six
    ? new pp.IPv6ProxyAddress(pp.IPv6Address.createFrom(bytes(src)), 40000, pp.IPv6Address.createFrom(bytes('2001:db8:ffff::1')), 25)
    : new pp.IPv4ProxyAddress(pp.IPv4Address.createFrom(src.split('.').map(Number)), 40000, pp.IPv4Address.createFrom([192, 0, 2, 1]), 25);
  return Buffer.from(new pp.V2ProxyProtocol(pp.Command.PROXY, pp.TransportProtocol.STREAM, address).build());
}

describe('behind a balancer: the client address from the PROXY header is grouped the same way', () => {
  const refused = refusals();
  let server: TestServer;
  let exact: TestServer;
  before(async () => {
    server = await startTestServer({ maxClientsPerIp: 1, proxyFrom: ['127.0.0.1'] });
    exact = await startTestServer({ maxClientsPerIp: 1, proxyFrom: ['127.0.0.1'], ipv6PrefixLength: 128 });
  });
  after(async () => {
    await server.stop();
    await exact.stop();
  });

  /** A session for the client at `src`, and the first reply it gets (220, or the refusal). */
  async function session(port: number, version: 1 | 2, src: string): Promise<{ c: RawClient; reply: string }> {
    const c = await RawClient.connect(port);
    c.write(header(version, src));
    return { c, reply: (await c.read()).text };
  }

  it('a second address in the same /64 is refused (v2, then v1); two other /64s are served', async () => {
    refused.length = 0;
    const a = await session(server.port, 2, '2001:db8:1:2::5');
    assert.match(a.reply, /^220 /);
    const b = await session(server.port, 1, '2001:db8:1:2:abcd::6');
    assert.equal(b.reply, perRange('2001:db8:1:2::/64'));
    assert.ok(await b.c.closedByServer());
    const c = await session(server.port, 2, '2001:db8:1:3::5');
    assert.match(c.reply, /^220 /, 'the next /64 is another client');
    const d = await session(server.port, 1, '2001:db8:2:2::5');
    assert.match(d.reply, /^220 /, 'and so is one in another /48');
    for (const s of [a, c, d]) await s.c.quit();
    assert.deepEqual(refused, [{ reason: 'per-client', remoteAddress: '2001:db8:1:2:abcd::6', reply: perRange('2001:db8:1:2::/64'), prefix: '2001:db8:1:2::/64' }]);
  });

  it('an IPv4-mapped source (v2) is its IPv4 address: the same client as that address in a v1 TCP4 header', async () => {
    refused.length = 0;
    const a = await session(server.port, 2, '::ffff:198.51.100.7');
    assert.match(a.reply, /^220 /);
    const b = await session(server.port, 1, '198.51.100.7');
    assert.equal(b.reply, perAddress);
    const c = await session(server.port, 1, '198.51.100.8');
    assert.match(c.reply, /^220 /, 'IPv4 is per address');
    for (const s of [a, c]) await s.c.quit();
    assert.deepEqual(refused, [{ reason: 'per-client', remoteAddress: '198.51.100.7', reply: perAddress }]);
  });

  it('with ipv6PrefixLength 128, two addresses of one /64 are two clients; one address twice is refused', async () => {
    refused.length = 0;
    const a = await session(exact.port, 2, '2001:db8:1:2::5');
    const b = await session(exact.port, 1, '2001:db8:1:2::6');
    assert.deepEqual([a.reply.slice(0, 4), b.reply.slice(0, 4)], ['220 ', '220 ']);
    const again = await session(exact.port, 1, '2001:db8:1:2:0:0:0:5');
    assert.equal(again.reply, perAddress);
    for (const s of [a, b]) await s.c.quit();
    assert.deepEqual(refused.map((e) => [e.remoteAddress, e.prefix]), [['2001:db8:1:2::5', undefined]]);
  });
});
