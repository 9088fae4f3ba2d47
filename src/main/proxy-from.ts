/**
 * `--proxy-from`: the load balancers trusted to send a PROXY protocol header,
 * as addresses or CIDR ranges, IPv4 or IPv6, matched with node:net's BlockList.
 */
import { BlockList, isIP } from 'node:net';

/** Checks the entries (each `ADDRESS` or `ADDRESS/PREFIX`); throws an Error naming the first bad one. */
export function checkProxyFrom(entries: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of entries) {
    const entry = raw.trim();
    const [address = '', prefix, extra] = entry.split('/');
    const family = isIP(address);
    const max = family === 6 ? 128 : 32;
    if (!family || extra !== undefined || (prefix !== undefined && !(/^\d{1,3}$/.test(prefix) && Number(prefix) <= max))) {
      throw new Error(`${JSON.stringify(raw)} is not an IP address or a CIDR range (e.g. 10.0.0.0/8, 192.0.2.7, 2001:db8::/32)`);
    }
    out.push(entry);
  }
  return out;
}

/** A test of a peer address (as a socket reports it: an IPv4 peer of a dual-stack listener is `::ffff:a.b.c.d`). */
export function proxyMatcher(entries: readonly string[]): (address: string | undefined) => boolean {
  const list = new BlockList();
  for (const entry of checkProxyFrom(entries)) {
    const [address, prefix] = entry.split('/') as [string, string | undefined];
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return (raw) => {
    if (!raw) return false;
    const address = /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(raw) ? raw.slice(7) : raw;
    const family = isIP(address);
    return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  };
}
