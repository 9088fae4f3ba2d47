/**
 * The client that --max-clients-per-ip counts a connection against. One IPv6
 * host usually holds a whole /64 (SLAAC and privacy addresses, a /64 per
 * customer), so counting its addresses one by one would let it open as many
 * connections as it has addresses: an IPv6 client is its prefix
 * (`ipv6PrefixLength`, /64 by default). An IPv4 address is one client, and an
 * IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, a dual-stack listener's IPv4
 * peer, or a PROXY v2 header's) is that IPv4 address.
 *
 * A small parser of our own rather than node:net: BlockList can test whether
 * an address is in a range, but nothing in Node names the range an address is
 * in, which is the key here and the text of the refusal. Nor ipaddr.js (2.4.0,
 * tried): it reads the IPv4-compatible `::192.0.2.7` as the mapped
 * `::ffff:192.0.2.7`, and breaks RFC 5952's tie between two zero runs on the
 * wrong side (`0:0:1::1:0:1` for `::1:0:0:1:0:1`). test/ipv6-prefix.test.ts
 * checks ours against the WHATWG URL serializer.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** The default of `ipv6PrefixLength`: the usual network of one IPv6 host, or one customer. */
export const IPV6_PREFIX_DEFAULT = 64;

/**
 * The key of one client address:
 * - IPv4, and IPv4-mapped IPv6: the IPv4 address (`192.0.2.7`);
 * - IPv6, `ipv6PrefixLength` below 128: its network in RFC 5952 form and the
 *   length (`2001:db8:1:2::/64`), a zone id kept where RFC 4007 puts it
 *   (`fe80::%eth0/64`: a link-local network is one per interface);
 * - IPv6 at 128: the address itself, in RFC 5952 form (one client however
 *   a PROXY v1 header spells it);
 * - anything else (no IP address): unchanged.
 * Only a range's key has a `/` (a zone id cannot hold one): smtp-limits.ts names it in the refusal.
 */
export function clientKey(address: string, ipv6PrefixLength: number): string {
  if (isIPv4(address)) return address;
  const parsed = parseIPv6(address);
  if (!parsed) return address;
  const { groups, zone } = parsed;
  if (isMapped(groups)) return `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`;
  if (ipv6PrefixLength >= 128) return formatIPv6(groups) + zone;
  return `${formatIPv6(network(groups, ipv6PrefixLength))}${zone}/${ipv6PrefixLength}`;
}

/** `::ffff:0:0/96` */
const isMapped = (g: number[]): boolean => g[5] === 0xffff && g.slice(0, 5).every((x) => x === 0);

/**
 * The eight 16-bit groups of an IPv6 address and its zone id (`%eth0`, or ''), or undefined when
 * node:net does not take it for one. Handles `::` anywhere and a dotted IPv4 tail (`::ffff:192.0.2.1`).
 */
export function parseIPv6(address: string): { groups: number[]; zone: string } | undefined {
  if (!isIPv6(address)) return undefined;
  const at = address.indexOf('%');
  const zone = at < 0 ? '' : address.slice(at);
  let hex = at < 0 ? address : address.slice(0, at);
  const last: number[] = [];
  const colon = hex.lastIndexOf(':');
  if (hex.includes('.', colon)) {
    const [a = 0, b = 0, c = 0, d = 0] = hex.slice(colon + 1).split('.').map(Number);
    last.push((a << 8) | b, (c << 8) | d);
    // keep a `::` before the tail ("::ffff:" → "::ffff", "::" stays)
    hex = hex.endsWith('::', colon + 1) ? hex.slice(0, colon + 1) : hex.slice(0, colon);
  }
  const [head = '', tail] = hex.split('::');
  const part = (s: string | undefined): number[] => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const before = part(head);
  const after = part(tail);
  const zeros = tail === undefined ? [] : new Array<number>(Math.max(0, 8 - last.length - before.length - after.length)).fill(0);
  const groups = [...before, ...zeros, ...after, ...last];
  return groups.length === 8 ? { groups, zone } : undefined;
}

/** The first `length` bits of the groups, the rest zero. */
function network(groups: number[], length: number): number[] {
  return groups.map((g, i) => {
    const bits = Math.min(16, Math.max(0, length - 16 * i));
    return g & (0xffff << (16 - bits)) & 0xffff;
  });
}

/** RFC 5952: lowercase hex without leading zeros; the longest run of two or more zero groups (the first, on a tie) is `::`. */
export function formatIPv6(groups: number[]): string {
  let start = -1;
  let length = 1;
  for (let i = 0; i < groups.length;) {
    let j = i;
    while (j < groups.length && groups[j] === 0) j++;
    if (j - i > length) {
      start = i;
      length = j - i;
    }
    i = j > i ? j : i + 1;
  }
  const hex = groups.map((g) => g.toString(16));
  if (start < 0) return hex.join(':');
  return `${hex.slice(0, start).join(':')}::${hex.slice(start + length).join(':')}`;
}
