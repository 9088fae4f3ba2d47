/**
 * DNS for message authentication, in a worker: the chosen servers, a time
 * limit per look-up and per message, and a small cache shared by the look-ups
 * of this worker. Errors keep node:dns's codes (ENOTFOUND, ENODATA: no record;
 * anything else is temporary), which is what mailauth reads.
 */
import { Resolver } from 'node:dns/promises';

/** Answers (and "no such record") are kept this long: TXT answers carry no TTL in node:dns. */
const CACHE_MS = 60_000;
/** Most answers kept per worker; the oldest go first. */
const CACHE_SIZE = 1000;
const NO_RECORD = new Set(['ENOTFOUND', 'ENODATA']);

type Answer = { until: number; value?: unknown; code?: string };

function dnsError(code: string, name: string, rrtype: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`query ${rrtype} ${name}: ${code}`);
  err.code = code;
  return err;
}

export class AuthDns {
  private readonly resolver: Resolver;
  private readonly cache = new Map<string, Answer>();

  constructor(servers: string[], private readonly lookupTimeout: number) {
    // one try: the time limit is ours, not c-ares' retries with back-off
    this.resolver = new Resolver({ timeout: lookupTimeout, tries: 1 });
    if (servers.length) this.resolver.setServers(servers);
  }

  /** A resolver for one message (mailauth's `resolver` option): no look-up runs past `deadline` (ms since the epoch). */
  forMessage(deadline: number): (name: string, rrtype: string) => Promise<unknown> {
    return (name, rrtype) => this.resolve(name, rrtype, deadline);
  }

  private async resolve(name: string, rrtype: string, deadline: number): Promise<unknown> {
    const key = `${rrtype} ${name.toLowerCase()}`;
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) {
      if (hit.code) throw dnsError(hit.code, name, rrtype);
      return hit.value;
    }
    const left = Math.min(this.lookupTimeout, deadline - now);
    if (left <= 0) throw dnsError('ETIMEOUT', name, rrtype);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(dnsError('ETIMEOUT', name, rrtype)), left);
    });
    try {
      const value = await Promise.race([this.resolver.resolve(name, rrtype), timeout]);
      this.remember(key, { until: Date.now() + CACHE_MS, value });
      return value;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'ESERVFAIL';
      // only "no such record" is an answer worth keeping; a failure is tried again next time
      if (NO_RECORD.has(code)) this.remember(key, { until: Date.now() + CACHE_MS, code });
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private remember(key: string, answer: Answer): void {
    this.cache.delete(key);
    if (this.cache.size >= CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, answer);
  }
}
