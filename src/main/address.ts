/** Listening addresses as the flags give them (`--listen`, `--listen-tls`, `--metrics`). */

/**
 * `HOST:PORT`, `[IPv6]:PORT`, `:PORT` (every IPv4 address, as HAProxy's `bind :25`), or a bare
 * `PORT` (127.0.0.1); undefined when the value is none of these.
 */
export function parseHostPort(v: string): { host: string; port: number } | undefined {
  const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):)?(\d{1,5})$/.exec(v);
  if (!m || Number(m[3]) > 65535) return undefined;
  const host = m[1] ?? m[2];
  return { host: host === undefined ? '127.0.0.1' : host === '' ? '0.0.0.0' : host, port: Number(m[3]) };
}
