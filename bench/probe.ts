/** Time to greeting of fresh connections while a load runs (connect → 220, then QUIT). */
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { summarize, type Stats } from './stats.ts';

/** Fresh connections during the run, timing connect → 220 (then QUIT). */
export function startProbes(o: { host: string; port: number; timeoutMs: number; probeIntervalMs?: number }): { stop(): Stats & { errors: number } } {
  const times = new Float64Array(Math.ceil(o.timeoutMs / o.probeIntervalMs!) + 1);
  let n = 0;
  let errors = 0;
  const timer = setInterval(() => {
    if (n >= times.length) return;
    const t0 = performance.now();
    const s = connect({ host: o.host, port: o.port });
    let got = false;
    s.setTimeout(10_000, () => s.destroy());
    s.once('data', (d: Buffer) => {
      got = true;
      if (d[0] === 50 && d[1] === 50 && d[2] === 48) times[n++] = performance.now() - t0;
      else errors++;
      s.end('QUIT\r\n');
    });
    s.on('error', () => {});
    s.on('close', () => { if (!got) errors++; });
  }, o.probeIntervalMs);
  return { stop: () => (clearInterval(timer), { ...summarize(times, n), errors }) };
}
