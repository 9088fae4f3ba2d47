/** Results: medians per step and target, ratios per round, the printed table. */
import type { LoadResult } from './loadgen.ts';

/** What a run measures. */
export type Mode = 'end-to-end' | 'receive-only';

export const MODES: Record<Mode, string> = {
  'end-to-end': 'end to end: received and delivered — smtp-receive runs a deliver() that returns at once '
    + '(Postfix: discard); msg/s = accepted ÷ (first connect → queue empty, every accepted message delivered)',
  'receive-only': 'receive only: smtp-receive delivers nothing (serve --no-runner); '
    + 'msg/s = accepted ÷ (first connect → last 250); Postfix\'s queue drains between runs, unmeasured',
};

export interface RunRecord {
  step: string;
  target: string;
  round: number;
  result: LoadResult;
  /** The server's main-thread event-loop delay during the run, ms (Node servers). */
  loopDelayMs?: { p50: number; p99: number; max: number };
}

export interface Summary {
  step: string;
  target: string;
  runs: number;
  msgPerSec: { median: number; min: number; max: number };
  /** Median of accepted ÷ (first connect → last 250): receiving alone, even in an end-to-end run. */
  receiveMsgPerSec?: number;
  /** End to end: median time from the last 250 to the server's queue empty, ms. */
  drainMs?: number;
  /** End to end: messages still queued when the wait ended, summed over runs (0: all delivered). */
  undelivered?: number;
  mbPerSec: number;
  /** Medians over runs (undefined when the client reports none, e.g. smtp-source). */
  latencyMs?: { p50: number; p90: number; p99: number; max: number };
  cpuSecPer1k?: number;
  peakRssMB?: number;
  /** Largest RssAnon: without file mappings (LMDB's map counts in RSS as it is touched). */
  peakAnonMB?: number;
  hwmMB?: number;
  probeGreetingMs?: { p50: number; p99: number; max: number; count: number; errors: number };
  greetingMs: { p50: number; p99: number };
  envelopeMs: { p50: number; p99: number };
  clientLagP99Ms: number;
  failed: number;
  errors: Record<string, number>;
}

export interface Ratio {
  step: string;
  /** smtp-receive ÷ this target. */
  versus: string;
  perRound: number[];
  median: number;
  /** smtp-receive's p99 end-of-DATA→250 latency ÷ this target's, median over rounds. */
  p99LatencyMedian?: number;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m]! : (a[m - 1]! + a[m]!) / 2;
}

const r2 = (x: number): number => Math.round(x * 100) / 100;
const MB = 1024 * 1024;

export function summarize(records: RunRecord[]): Summary[] {
  const groups = new Map<string, RunRecord[]>();
  for (const r of records) {
    const key = `${r.step}\0${r.target}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((rs) => {
    const res = rs.map((r) => r.result);
    const m = (f: (x: LoadResult) => number): number => r2(median(res.map(f)));
    const errors: Record<string, number> = {};
    for (const x of res) for (const [k, n] of Object.entries(x.errors)) errors[k] = (errors[k] ?? 0) + n;
    const withServer = res.filter((x) => x.server);
    const probes = res.map((x) => x.probeGreetingMs).filter((p) => p !== undefined);
    const drained = res.filter((x) => x.drainMs !== undefined);
    return {
      step: rs[0]!.step,
      target: rs[0]!.target,
      runs: rs.length,
      msgPerSec: { median: m((x) => x.msgPerSec), min: Math.min(...res.map((x) => x.msgPerSec)), max: Math.max(...res.map((x) => x.msgPerSec)) },
      receiveMsgPerSec: res.every((x) => x.receiveMsgPerSec !== undefined) ? m((x) => x.receiveMsgPerSec) : undefined,
      drainMs: drained.length ? r2(median(drained.map((x) => x.drainMs!))) : undefined,
      undelivered: drained.length ? drained.reduce((n, x) => n + (x.undelivered ?? 0), 0) : undefined,
      mbPerSec: m((x) => x.mbPerSec),
      latencyMs: res.some((x) => x.latencyMs.count) ? {
        p50: m((x) => x.latencyMs.p50), p90: m((x) => x.latencyMs.p90), p99: m((x) => x.latencyMs.p99), max: Math.max(...res.map((x) => x.latencyMs.max)),
      } : undefined,
      cpuSecPer1k: withServer.length ? r2(median(withServer.map((x) => x.server!.cpuSecPer1k))) : undefined,
      peakRssMB: withServer.length ? r2(Math.max(...withServer.map((x) => x.server!.peakRssBytes)) / MB) : undefined,
      peakAnonMB: withServer.length ? r2(Math.max(...withServer.map((x) => x.server!.peakAnonBytes)) / MB) : undefined,
      hwmMB: withServer.length ? r2(Math.max(...withServer.map((x) => x.server!.hwmBytes)) / MB) : undefined,
      probeGreetingMs: probes.length ? {
        p50: r2(median(probes.map((p) => p.p50))), p99: r2(median(probes.map((p) => p.p99))),
        max: Math.max(...probes.map((p) => p.max)), count: probes.reduce((s, p) => s + p.count, 0),
        errors: probes.reduce((s, p) => s + p.errors, 0),
      } : undefined,
      greetingMs: { p50: m((x) => x.greetingMs.p50), p99: m((x) => x.greetingMs.p99) },
      envelopeMs: { p50: m((x) => x.envelopeMs.p50), p99: m((x) => x.envelopeMs.p99) },
      clientLagP99Ms: m((x) => x.clientLagMs.p99),
      failed: res.reduce((s, x) => s + x.failed, 0),
      errors,
    };
  });
}

export function ratios(records: RunRecord[], main = 'smtp-receive'): Ratio[] {
  const out: Ratio[] = [];
  const steps = [...new Set(records.map((r) => r.step))];
  const others = [...new Set(records.map((r) => r.target))].filter((t) => t !== main);
  for (const step of steps) {
    for (const versus of others) {
      const perRound: number[] = [];
      const p99: number[] = [];
      for (const a of records.filter((r) => r.step === step && r.target === main)) {
        const b = records.find((r) => r.step === step && r.target === versus && r.round === a.round);
        if (!b || b.result.msgPerSec === 0) continue;
        perRound.push(r2(a.result.msgPerSec / b.result.msgPerSec));
        if (b.result.latencyMs.p99 > 0) p99.push(a.result.latencyMs.p99 / b.result.latencyMs.p99);
      }
      if (perRound.length) {
        out.push({ step, versus, perRound, median: r2(median(perRound)), p99LatencyMedian: p99.length ? r2(median(p99)) : undefined });
      }
    }
  }
  return out;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd()).join('\n');
}

const f = (x: number | undefined, digits = 0): string => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits));

export function formatTable(summaries: Summary[], rs: Ratio[], mode: Mode = 'receive-only'): string {
  const e2e = mode === 'end-to-end';
  const rows = [['step', 'target', 'runs', e2e ? 'msg/s e2e (median)' : 'msg/s (median)', 'min–max',
    ...(e2e ? ['to last 250', 'drain ms'] : []), 'MB/s', 'env p50', 'lat p50', 'p90', 'p99', 'max ms', 'CPU s/1k', 'RSS MB', 'anon MB', 'errors']];
  for (const s of summaries) {
    const errs = Object.entries(s.errors).map(([k, n]) => `${k}×${n}`).join(', ');
    rows.push([
      s.step, s.target, String(s.runs), f(s.msgPerSec.median), `${f(s.msgPerSec.min)}–${f(s.msgPerSec.max)}`,
      ...(e2e ? [f(s.receiveMsgPerSec), s.drainMs === undefined ? 'n/a' : f(s.drainMs)] : []), f(s.mbPerSec, 1),
      s.latencyMs ? f(s.envelopeMs.p50, 1) : '-', f(s.latencyMs?.p50, 1), f(s.latencyMs?.p90, 1), f(s.latencyMs?.p99, 1), f(s.latencyMs?.max, 0),
      f(s.cpuSecPer1k, 2), f(s.peakRssMB, 0), f(s.peakAnonMB, 0), errs || (s.failed ? `${s.failed} failed` : '0'),
    ]);
  }
  let out = `${MODES[mode]}\n`;
  if (e2e) {
    out += 'to last 250: msg/s to the last 250 alone; drain ms: last 250 → queue empty (n/a: nothing is queued after the 250, the stored file is the delivery)\n';
  }
  out += table(rows);
  const probes = summaries.filter((s) => s.probeGreetingMs);
  for (const s of probes) {
    const p = s.probeGreetingMs!;
    out += `\n${s.step} / ${s.target}: time to greeting of fresh connections during the load: `
      + `p50 ${p.p50} ms, p99 ${p.p99} ms, max ${p.max} ms (${p.count} probes, ${p.errors} failed)`;
  }
  if (rs.length) {
    const rrows = [['step', 'smtp-receive ÷', 'per round (msg/s ratio)', 'median', 'p99 latency ratio (median)']];
    for (const r of rs) rrows.push([r.step, r.versus, r.perRound.map((x) => x.toFixed(2)).join(' '), r.median.toFixed(2), f(r.p99LatencyMedian, 2)]);
    out += `\n\n${table(rrows)}`;
  }
  return out;
}
