/** The `--metrics` value: an address as `--listen` takes it (../address.ts), or `off`. */
import { parseHostPort } from '../address.ts';

export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9525';

export interface MetricsAddress {
  host: string;
  port: number;
}

/** false for `off`; undefined when the value is not an address. */
export function parseMetricsAddress(v: string | false): MetricsAddress | false | undefined {
  if (v === false || v === 'off') return false;
  return parseHostPort(v);
}
