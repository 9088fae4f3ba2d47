/** Percentiles of a run's samples (ms). */
export interface Stats { count: number; p50: number; p90: number; p99: number; max: number; mean: number }

export function summarize(values: Float64Array, n: number): Stats {
  if (n === 0) return { count: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
  const a = values.slice(0, n).sort();
  const at = (q: number): number => a[Math.min(n - 1, Math.ceil(q * n) - 1)]!;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += a[i]!;
  const r = (x: number): number => Math.round(x * 100) / 100;
  return { count: n, p50: r(at(0.5)), p90: r(at(0.9)), p99: r(at(0.99)), max: r(a[n - 1]!), mean: r(sum / n) };
}
