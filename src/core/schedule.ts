/** When to try again: exponential backoff with jitter, and the queue lifetime. */

export interface RetryPolicy {
  /** First retry delay, ms. @default 300_000 (Postfix's minimal_backoff_time) */
  minDelay: number;
  /** Longest retry delay, ms. @default 4_000_000 (Postfix's maximal_backoff_time) */
  maxDelay: number;
  /** After this long in the queue a message goes on hold and `expired` runs, ms. @default 5 days */
  maxLifetime: number;
  /** Fraction of the delay added or taken at random, so a restart does not retry everything at once. @default 0.1 */
  jitter: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  minDelay: 300_000,
  maxDelay: 4_000_000,
  maxLifetime: 5 * 24 * 3600_000,
  jitter: 0.1,
};

/**
 * The delay before attempt `attempts + 1`, after `attempts` failed ones:
 * minDelay · 2^(attempts−1), capped at maxDelay, ± jitter.
 */
export function retryDelay(policy: RetryPolicy, attempts: number, random: () => number = Math.random): number {
  const base = Math.min(policy.maxDelay, policy.minDelay * 2 ** Math.max(0, attempts - 1));
  const spread = base * policy.jitter * (2 * random() - 1);
  return Math.max(0, Math.round(base + spread));
}

/** True once a message that arrived at `time` has outlived the queue lifetime. */
export function isExpired(policy: RetryPolicy, time: number, now: number): boolean {
  return now - time >= policy.maxLifetime;
}
