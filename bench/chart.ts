/**
 * A bench result as a chart (SVG, rendered in Node by Vega-Lite and Vega — no
 * browser): per step and target, messages per second (median of the rounds,
 * whiskers min–max), end-of-DATA→250 latency p50 and p99, and the server's CPU
 * per 1,000 messages. bench/run.ts writes one next to each result JSON; this
 * renders one from an existing result:
 *
 *   node --import tsx bench/chart.ts bench/results/small-….json out.svg
 */
import { readFile, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { parse as parseVega, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { Mode, Ratio, Summary } from './report.ts';

/** The parts of a result file (bench/run.ts) the chart reads; older files lack `mode`. */
export interface ResultFile {
  scenario: string;
  description: string;
  started: string;
  mode?: Mode;
  machine: { cores: number; cpu?: string; loadavgAtStart: number[]; loadavgAtEnd?: number[] };
  node: string;
  options: { rounds: number; client: string; built: boolean };
  targets: Array<{ name: string; version: string }>;
  steps: Array<{ label: string }>;
  summary: Summary[];
  ratios: Ratio[];
}

const COLORS: Record<string, string> = {
  'smtp-receive': '#1f77b4', 'smtp-receive-metrics': '#17becf', postfix: '#d62728', sink: '#7f7f7f', 'sink-nofsync': '#bcbd22', haraka: '#2ca02c',
};

/** What each target does with a message (a line of the subtitle for those in the chart). */
const WHAT: Record<string, string> = {
  postfix: 'postfix: smtpd → cleanup (fsync) → qmgr → discard',
  sink: 'sink: bare smtp-server, one fsync\'ed file per message, no queue (nothing delivered)',
  'sink-nofsync': 'sink-nofsync: the same without fsync',
  haraka: 'haraka: one fdatasync\'ed file per message (its queue plugin)',
};

const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** The Vega-Lite specification of a result's chart. */
export function chartSpec(r: ResultFile): TopLevelSpec {
  const endToEnd = r.mode === 'end-to-end';
  const steps = r.steps.map((s) => s.label).filter((l) => r.summary.some((s) => s.step === l));
  const targets = r.targets.map((t) => t.name);
  const rows = r.summary.map((s) => ({
    step: s.step, target: s.target,
    msgs: s.msgPerSec.median, min: s.msgPerSec.min, max: s.msgPerSec.max, label: fmt(s.msgPerSec.median),
    cpu: s.cpuSecPer1k ?? null, cpuLabel: s.cpuSecPer1k === undefined ? '' : fmt(s.cpuSecPer1k),
    rss: s.peakRssMB ?? null,
  }));
  const latency = r.summary.filter((s) => s.latencyMs).flatMap((s) => [
    { step: s.step, target: s.target, percentile: 'p50', ms: Math.max(s.latencyMs!.p50, 0.01), label: fmt(s.latencyMs!.p50) },
    { step: s.step, target: s.target, percentile: 'p99', ms: Math.max(s.latencyMs!.p99, 0.01), label: fmt(s.latencyMs!.p99) },
  ]);
  // a log scale a little wider than the data, ticks at 1-2-5 steps within it
  const lo = Math.min(...latency.map((l) => l.ms)) / 1.6;
  const hi = Math.max(...latency.map((l) => l.ms)) * 1.6;
  const ticks: number[] = [];
  for (let d = 10 ** Math.floor(Math.log10(lo)); d <= hi; d *= 10) for (const m of [1, 2, 5]) if (d * m >= lo && d * m <= hi) ticks.push(+(d * m).toPrecision(1));
  const ranges = r.summary.filter((s) => s.latencyMs).map((s) => ({
    step: s.step, target: s.target, p50: Math.max(s.latencyMs!.p50, 0.01), p99: Math.max(s.latencyMs!.p99, 0.01),
  }));
  const width = Math.max(680, steps.length * (targets.length * 34 + 40));
  const x = { field: 'step', type: 'nominal', sort: steps, title: null, axis: { labelAngle: 0, labelFontSize: 12 } } as const;
  const xLast = { ...x, title: 'step (message size × concurrent sessions)' } as const;
  const xOffset = { field: 'target', type: 'nominal', sort: targets } as const;
  const color = {
    field: 'target', type: 'nominal', sort: targets, title: 'server',
    scale: { domain: targets, range: targets.map((t) => COLORS[t] ?? '#9467bd') },
  } as const;
  const mode = endToEnd
    ? 'End to end: received and delivered (smtp-receive: a deliver() that returns at once; Postfix: discard)'
    : r.mode === 'receive-only'
      ? 'Receive only: smtp-receive delivers nothing; each run ends at the last 250'
      : 'Older result (before end-to-end runs): smtp-receive delivered nothing';
  const msgsTitle = endToEnd ? 'msg/s, end to end' : 'msg/s, to the last 250';
  const load = (l: number[] | undefined): string => (l ? l.map((v) => v.toFixed(2)).join(' ') : '?');
  const ratioLines = [...new Set(r.ratios.map((x) => x.versus))].map((versus) => `smtp-receive ÷ ${versus} (msg/s, median of rounds): `
    + r.ratios.filter((x) => x.versus === versus).map((x) => `${x.step} ${x.median.toFixed(2)}×`).join(' · '));
  const ours = r.targets.find((t) => t.name === 'smtp-receive')?.version;
  const subtitle = [
    mode,
    `${r.machine.cores} cores${r.machine.cpu ? ` (${r.machine.cpu.trim()})` : ''}, Node ${r.node}; ${r.options.rounds} round(s) per step, targets interleaved; client ${r.options.client}`,
    `load average (1, 5, 15 min; the bench's own processes count in it): ${load(r.machine.loadavgAtStart)} at the start, ${load(r.machine.loadavgAtEnd)} at the end`,
    ...(ours ? [`${ours}; started ${r.started}`] : [`started ${r.started}`]),
    ...(targets.some((t) => WHAT[t]) ? [targets.filter((t) => WHAT[t]).map((t) => WHAT[t]).join('; ')] : []),
    ...ratioLines,
  ];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `bench ${r.scenario}: ${r.description}`, subtitle, anchor: 'start', fontSize: 15, subtitleFontSize: 11, subtitlePadding: 6, offset: 12 },
    background: 'white',
    padding: 16,
    config: {
      font: 'Helvetica, Arial, sans-serif',
      axis: { labelFontSize: 11, titleFontSize: 12 },
      legend: { labelFontSize: 12, titleFontSize: 12, orient: 'top', symbolOpacity: 1, symbolSize: 120 },
      header: { labelFontSize: 12 },
      view: { stroke: '#ddd' },
    },
    spacing: 28,
    resolve: { scale: { color: 'shared' } },
    vconcat: withXTitle([
      {
        width, height: 220,
        title: { text: `Throughput (${endToEnd ? 'accepted ÷ first connect → last delivery' : 'accepted ÷ first connect → last 250'}): median; whiskers min–max`, anchor: 'start', fontSize: 13 },
        data: { values: rows },
        encoding: { x, xOffset },
        layer: [
          { mark: { type: 'bar' }, encoding: { y: { field: 'msgs', type: 'quantitative', title: msgsTitle }, color } },
          { mark: { type: 'rule', color: 'black', strokeWidth: 1 }, encoding: { y: { field: 'min', type: 'quantitative' }, y2: { field: 'max' } } },
          {
            mark: { type: 'text', dy: -6, baseline: 'bottom', fontSize: 10 },
            encoding: { y: { field: 'max', type: 'quantitative' }, text: { field: 'label', type: 'nominal' } },
          },
        ],
      },
      ...(latency.length ? [{
        width, height: 220,
        title: { text: 'End of DATA → 250 latency, ms (log scale): ● p50  ▲ p99, median over rounds', anchor: 'start' as const, fontSize: 13 },
        encoding: { x, xOffset },
        layer: [
          {
            data: { values: ranges },
            mark: { type: 'rule' as const, strokeWidth: 2, opacity: 0.5 },
            encoding: {
              y: { field: 'p50', type: 'quantitative' as const, scale: { type: 'log' as const, domain: [lo, hi], nice: false }, axis: { values: ticks }, title: 'ms (log scale)' },
              y2: { field: 'p99' }, color,
            },
          },
          {
            data: { values: latency },
            mark: { type: 'point' as const, filled: true, size: 60, opacity: 1 },
            encoding: {
              y: { field: 'ms', type: 'quantitative' as const },
              shape: {
                field: 'percentile', type: 'nominal' as const, title: 'latency',
                scale: { domain: ['p50', 'p99'], range: ['circle', 'triangle-up'] },
              },
              color,
              tooltip: [{ field: 'target' }, { field: 'percentile' }, { field: 'ms', type: 'quantitative' as const }],
            },
          },
          {
            data: { values: latency },
            mark: { type: 'text' as const, fontSize: 9, align: 'left' as const, dx: 5, baseline: 'middle' as const },
            encoding: { y: { field: 'ms', type: 'quantitative' as const }, text: { field: 'label', type: 'nominal' as const } },
          },
        ],
      }] : []),
      ...(rows.some((x) => x.cpu !== null) ? [{
        width, height: 160,
        title: { text: `Server CPU per 1,000 messages, s (user + system, all its processes and threads${endToEnd ? ', delivery included' : ''})`, anchor: 'start' as const, fontSize: 13 },
        data: { values: rows },
        encoding: { x, xOffset },
        layer: [
          { mark: { type: 'bar' as const }, encoding: { y: { field: 'cpu', type: 'quantitative' as const, title: 'CPU s / 1,000 msg' }, color } },
          {
            mark: { type: 'text' as const, dy: -3, baseline: 'bottom' as const, fontSize: 10 },
            encoding: { y: { field: 'cpu', type: 'quantitative' as const }, text: { field: 'cpuLabel', type: 'nominal' as const } },
          },
        ],
      }] : []),
    ], xLast),
  } as TopLevelSpec;
}

/** The bottom panel gets the x axis's title. */
function withXTitle<P extends { encoding: object }>(panels: P[], x: object): P[] {
  return panels.map((p, i) => (i === panels.length - 1 ? { ...p, encoding: { ...p.encoding, x } } : p));
}

/** The chart of a result, as SVG text. */
export async function renderChart(r: ResultFile): Promise<string> {
  const view = new View(parseVega(compile(chartSpec(r)).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Reads a result JSON, writes its chart as SVG. */
export async function renderChartFile(resultFile: string, svgFile: string): Promise<void> {
  const r = JSON.parse(await readFile(resultFile, 'utf8')) as ResultFile;
  if (!r.summary?.length) throw new Error(`${resultFile}: no summary to draw (not a bench/run.ts result?)`);
  await writeFile(svgFile, await renderChart(r));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) {
    process.stderr.write('usage: node --import tsx bench/chart.ts RESULT.json OUT.svg\n');
    process.exit(2);
  }
  renderChartFile(input, output).then(
    () => process.stdout.write(`${output}\n`),
    (err: Error) => {
      process.stderr.write(`chart: ${err.message}\n`);
      process.exit(1);
    },
  );
}
