/** The `--metrics` value: `HOST:PORT`, `[IPv6]:PORT`, `:PORT` (every IPv4 address), `PORT` (127.0.0.1), or `off`. */

export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9525';

export interface MetricsAddress {
  host: string;
  port: number;
}

/** false for `off`; undefined when the value is not an address. */
export function parseMetricsAddress(v: string | false): MetricsAddress | false | undefined {
  if (v === false || v === 'off') return false;
  const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):)?(\d{1,5})$/.exec(v);
  if (!m || Number(m[3]) > 65535) return undefined;
  const host = m[1] ?? m[2];
  return { host: host === undefined ? '127.0.0.1' : host === '' ? '0.0.0.0' : host, port: Number(m[3]) };
}
