/**
 * `npm run bench -- <scenario> [--quick] [--compare postfix,sink] [--client smtp-source] …`
 *
 * Starts the server(s) itself (each on 127.0.0.1, a free port, a fresh temporary
 * queue), runs the scenario's steps, prints a table and writes the results as JSON
 * to bench/results/. With --compare the same load runs against every target in
 * the same run, interleaved (A B C, then C B A, …), and ratios are reported.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { runLoad, type LoadOptions, type LoadResult } from './loadgen.ts';
import { MODES, formatTable, ratios, summarize, type Mode, type RunRecord } from './report.ts';
import { SCENARIOS, type Scenario, type Step } from './scenarios.ts';
import { runSmtpSource } from './smtp-source.ts';
import { startBenchAuth } from './auth.ts';
import { BENCH, ROOT, TARGETS, startTarget, type Target, type TargetName } from './targets.ts';

const USAGE = `Usage: npm run bench -- <scenario> [options]

Scenarios:
${Object.values(SCENARIOS).map((s) => `  ${s.name.padEnd(15)} ${s.description}`).join('\n')}

Options:
  --quick              fewer messages and rounds
  --receive-only       smtp-receive delivers nothing (serve --no-runner) and each run ends at the
                       last 250; by default every run is end to end: smtp-receive runs a deliver()
                       that returns at once (bench/fixtures/trivial-deliver.ts, like Postfix's
                       discard) and each run lasts until every accepted message is delivered
  --compare LIST       also run the same load against: ${TARGETS.filter((t) => t !== 'smtp-receive').join(', ')} (comma-separated)
  --rounds N           rounds per step (default 1; with --compare 5, or 3 with --quick)
  --sessions LIST      only these session counts (e.g. 16 or 1,16) for steps that vary them
  --messages N         messages per run instead of the scenario's
  --client NAME        loadgen (default) or smtp-source (Postfix's; no pipelining, no latencies)
  --pipelining         pipeline MAIL/RCPT/DATA in every step
  --serve-args "…"     more flags for \`smtp-receive serve\` (e.g. "--inline-max 0")
  --auth               smtp-receive authenticates every message (SPF, DKIM, DMARC; serve --auth on,
                       DNS answered by a local server); the messages are DKIM-signed (bench/auth.ts).
                       Default: serve --auth off
  --built              run the built CLI (bin/smtp-receive.js, dist/ as it is) instead of src/ under tsx
  --max-minutes N      stop everything after N minutes (default 30)
`;

interface RunOptions {
  quick: boolean;
  receiveOnly: boolean;
  targets: TargetName[];
  rounds: number;
  sessions?: number[];
  messages?: number;
  client: 'loadgen' | 'smtp-source';
  pipelining: boolean;
  serveArgs: string[];
  built: boolean;
  maxMinutes: number;
  /** smtp-receive authenticates (serve --auth on, DNS answered locally), messages DKIM-signed. */
  auth: boolean;
}

function parse(argv: string[]): { scenario: Scenario; o: RunOptions } {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      quick: { type: 'boolean', default: false }, 'receive-only': { type: 'boolean', default: false }, compare: { type: 'string' }, rounds: { type: 'string' },
      sessions: { type: 'string' }, messages: { type: 'string' }, client: { type: 'string', default: 'loadgen' },
      pipelining: { type: 'boolean', default: false }, 'serve-args': { type: 'string' }, built: { type: 'boolean', default: false },
      'max-minutes': { type: 'string', default: '30' }, auth: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if (positionals.length !== 1) throw new UsageError(USAGE);
  const scenario = SCENARIOS[positionals[0]!];
  if (!scenario) throw new UsageError(`unknown scenario ${JSON.stringify(positionals[0])}\n\n${USAGE}`);
  const compare = (v.compare ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const t of compare) if (!TARGETS.includes(t as TargetName) || t === 'smtp-receive') throw new UsageError(`--compare: unknown target ${JSON.stringify(t)}`);
  if (compare.length && !scenario.comparable) throw new UsageError(`the ${scenario.name} scenario runs smtp-receive only (no --compare)`);
  if (v.client !== 'loadgen' && v.client !== 'smtp-source') throw new UsageError('--client: loadgen or smtp-source');
  if (v.client === 'smtp-source' && scenario.steps(true).some((s) => s.load.probeIntervalMs)) throw new UsageError(`--client smtp-source cannot run ${scenario.name}`);
  if (v.auth && v.client === 'smtp-source') throw new UsageError('--auth needs --client loadgen (the messages are DKIM-signed)');
  const list = (s: string | undefined): number[] | undefined => s?.split(',').map(Number);
  const rounds = v.rounds ? Number(v.rounds) : compare.length ? (v.quick ? 3 : 5) : 1;
  return {
    scenario,
    o: {
      quick: v.quick, receiveOnly: v['receive-only'], targets: ['smtp-receive', ...(compare as TargetName[])], rounds,
      sessions: list(v.sessions), messages: v.messages ? Number(v.messages) : undefined,
      client: v.client, pipelining: v.pipelining, serveArgs: v['serve-args']?.split(/\s+/).filter(Boolean) ?? [],
      built: v.built, maxMinutes: Number(v['max-minutes']), auth: v.auth,
    },
  };
}

class UsageError extends Error {}

function steps(scenario: Scenario, o: RunOptions): Step[] {
  let list = scenario.steps(o.quick);
  if (o.sessions) {
    const varied = new Set(list.map((s) => s.load.sessions)).size > 1;
    if (varied) list = list.filter((s) => o.sessions!.includes(s.load.sessions));
    else list = list.flatMap((s) => o.sessions!.map((n) => ({ label: s.label.replace(/x\d+/, `x${n}`), load: { ...s.load, sessions: n } })));
  }
  return list.map((s) => ({
    label: s.label,
    load: { ...s.load, messages: o.messages ?? s.load.messages, pipelining: s.load.pipelining || o.pipelining },
  }));
}

function load(step: Step, target: Target, timeoutMs: number, mode: Mode, messages?: number, message?: Buffer): LoadOptions {
  // end to end: the run lasts until the server's queue is empty (every accepted message delivered)
  const untilDelivered = mode === 'end-to-end' && target.delivers ? () => target.untilDelivered(timeoutMs) : undefined;
  return {
    host: '127.0.0.1', port: target.port, rcptDomain: 'localhost', timeoutMs, serverPid: target.pid, serverTree: target.tree,
    ...step.load, ...(messages === undefined ? {} : { messages }), untilDelivered,
    // the signed message goes to smtp-receive only (another target would not check it)
    ...(message && target.name === 'smtp-receive' ? { message } : {}),
  };
}

/**
 * Receive only: Postfix goes on delivering after its last 250. Wait for its
 * queue to empty before the next run (outside any measurement), so that work
 * does not land in another target's run. (smtp-receive runs no runner then, or
 * the scenario's own receiver, which may never deliver.)
 */
async function settle(t: Target, mode: Mode, timeoutMs: number): Promise<void> {
  if (mode !== 'receive-only' || !t.delivers || t.name.startsWith('smtp-receive')) return;
  const left = await t.untilDelivered(timeoutMs, 50);
  if (left) process.stdout.write(`  (${t.name}: ${left} message(s) still queued after ${timeoutMs / 1000} s; going on)\n`);
}

/** Where smtp-receive's trivial deliver() lives: the built CLI gets a plain-JS copy on dist/ (no TypeScript loader). */
function deliverFixture(built: boolean): string {
  return join(BENCH, 'fixtures', built ? 'trivial-deliver.mjs' : 'trivial-deliver.ts');
}

function versionOf(name: TargetName, built: boolean): string {
  const run = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '?';
    }
  };
  const pkg = (p: string): string => (JSON.parse(readFileSync(join(ROOT, p), 'utf8')) as { version: string }).version;
  if (name === 'postfix') return `postfix ${run('postconf', ['-dh', 'mail_version'])}`;
  if (name === 'haraka') {
    try {
      const bin = realpathSync(run('sh', [join(BENCH, 'haraka', 'setup.sh'), '--which']));
      return `Haraka ${(JSON.parse(readFileSync(join(dirname(bin), '..', 'package.json'), 'utf8')) as { version: string }).version}, Node ${process.version}`;
    } catch {
      return 'Haraka ?';
    }
  }
  if (name !== 'smtp-receive' && name !== 'smtp-receive-metrics') return `smtp-server ${pkg('node_modules/smtp-server/package.json')} (patched), Node ${process.version}`;
  const dirty = run('git', ['--no-optional-locks', 'status', '--porcelain', '--', 'src']) ? ', src modified' : '';
  return `smtp-receive ${pkg('package.json')} (git ${run('git', ['rev-parse', '--short', 'HEAD'])}${dirty}; ${built ? 'built dist/' : 'src/ under tsx'})`;
}

async function main(argv: string[]): Promise<number> {
  const { scenario, o } = parse(argv);
  if (scenario.script) {
    const args = [...(o.quick ? scenario.script.quickArgs : []), ...(o.built ? ['--built'] : [])];
    const child = spawn(process.execPath, ['--import', 'tsx', join(BENCH, scenario.script.file), ...args], { cwd: ROOT, stdio: 'inherit' });
    return new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  }
  if (scenario.unavailable) {
    process.stderr.write(`bench ${scenario.name}: ${scenario.unavailable}\n`);
    return 3;
  }
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: stopped after --max-minutes ${o.maxMinutes}\n`);
    process.exit(4); // the 'exit' handler in targets.ts kills the servers we started
  }, o.maxMinutes * 60_000);
  watchdog.unref();
  const client = o.client === 'smtp-source' ? runSmtpSource : runLoad;
  // a scenario with its own receiver (cpu-predeliver) measures receiving only
  const mode: Mode = o.receiveOnly || scenario.receiver ? 'receive-only' : 'end-to-end';
  const receiver = scenario.receiver ?? (mode === 'end-to-end' ? deliverFixture(o.built) : undefined);
  const started = new Date();
  const machine = { cores: availableParallelism(), cpu: cpus()[0]?.model, memoryMB: Math.round(totalmem() / 2 ** 20), loadavgAtStart: loadavg() };
  const plan = steps(scenario, o);
  process.stdout.write(`bench ${scenario.name}: ${scenario.description}\n`
    + `targets ${o.targets.join(', ')}; client ${o.client}; ${o.rounds} round(s); ${machine.cores} cores, Node ${process.version}, load average ${machine.loadavgAtStart.map((x) => x.toFixed(2)).join(' ')}\n`
    + `${mode === 'end-to-end' ? 'end to end: every run lasts until every accepted message is delivered (--receive-only: to the last 250)' : 'receive only: every run ends at the last 250'}\n`);

  const targets: Target[] = [];
  const records: RunRecord[] = [];
  const logs: Record<string, { lines: number; tail: string }> = {};
  const auth = o.auth ? await startBenchAuth() : undefined;
  if (auth) process.stdout.write('authentication on: serve --auth on, DNS answered on 127.0.0.1, messages DKIM-signed (bench/auth.ts)\n');
  try {
    for (const name of o.targets) {
      targets.push(await startTarget(name, {
        maxSeconds: o.maxMinutes * 60 + 60, receiver, serveArgs: [...o.serveArgs, ...(auth ? auth.serveArgs : [])], built: o.built,
      }));
    }
    for (const step of plan) {
      if (o.client === 'smtp-source' && step.load.pipelining) {
        process.stdout.write(`${step.label}: skipped (smtp-source does not pipeline)\n`);
        continue;
      }
      const signed = auth ? await auth.message(step.load.size, 'user1@localhost') : undefined;
      if (scenario.warmup !== false) { // warm-up (JIT, process pools), not recorded
        for (const t of targets) {
          await client(load(step, t, scenario.runTimeoutMs, mode, Math.min(step.load.messages, Math.max(step.load.sessions * 2, 200)), signed));
          await settle(t, mode, scenario.runTimeoutMs);
        }
      }
      for (let round = 1; round <= o.rounds; round++) {
        const order = round % 2 ? targets : [...targets].reverse();
        for (const t of order) {
          await t.loopDelay(); // start the event-loop delay histogram afresh
          const result: LoadResult = await client(load(step, t, scenario.runTimeoutMs, mode, undefined, signed));
          const loopDelayMs = await t.loopDelay();
          await settle(t, mode, scenario.runTimeoutMs);
          records.push({ step: step.label, target: t.name, round, result, loopDelayMs });
          const errs = Object.keys(result.errors).length ? ` errors ${JSON.stringify(result.errors)}` : '';
          process.stdout.write(`  ${step.label} round ${round} ${t.name}: ${result.accepted}/${step.load.messages} accepted, `
            + `${result.msgPerSec.toFixed(0)} msg/s${result.drainMs === undefined ? '' : ` (queue empty ${result.drainMs.toFixed(0)} ms after the last 250)`}, p99 ${result.latencyMs.p99} ms, `
            + `CPU ${result.server?.cpuSecPer1k ?? '-'} s/1k, RSS ${((result.server?.peakRssBytes ?? 0) / 2 ** 20).toFixed(0)} MB`
            + `${loopDelayMs ? `, event-loop delay p99 ${loopDelayMs.p99} ms (max ${loopDelayMs.max})` : ''}${errs}\n`);
        }
      }
    }
  } finally {
    for (const t of targets) logs[t.name] = t.log();
    await Promise.all(targets.map((t) => t.stop()));
    if (auth) process.stdout.write(`authentication: ${auth.lookups()} DNS look-up(s) answered on 127.0.0.1\n`);
    await auth?.close();
  }

  const summaries = summarize(records);
  const rs = ratios(records);
  process.stdout.write(`\n${formatTable(summaries, rs, mode)}\n`);
  const problems = scenario.check?.(records.map((r) => ({ step: r.step, result: r.result }))) ?? [];
  const noisy = Object.entries(logs).filter(([name, l]) => l.lines > (name === 'smtp-receive' ? 2 : 0));
  for (const [name, l] of noisy) process.stdout.write(`\n${name} wrote ${l.lines} line(s) to stderr; the last ones:\n${l.tail.split('\n').slice(-6).join('\n')}\n`);

  const dir = join(BENCH, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${scenario.name}-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify({
    scenario: scenario.name, description: scenario.description, started: started.toISOString(), finished: new Date().toISOString(),
    mode, modeDescription: MODES[mode], receiver: receiver ?? null,
    machine: { ...machine, loadavgAtEnd: loadavg() }, node: process.version, options: { ...o, argv }, targets: o.targets.map((t) => ({ name: t, version: versionOf(t, o.built) })),
    steps: plan, runs: records, summary: summaries, ratios: rs, serverStderr: logs, problems,
  }, null, 2)}\n`);
  process.stdout.write(`\nresults: ${file}\n`);
  try {
    const svg = file.replace(/\.json$/, '.svg');
    const { renderChartFile } = await import('./chart.ts'); // vega loads only now
    await renderChartFile(file, svg);
    process.stdout.write(`chart: ${svg}\n`);
  } catch (err) {
    process.stderr.write(`bench: no chart: ${(err as Error).message}\n`); // the results stand without it
  }
  for (const p of problems) process.stderr.write(`bench ${scenario.name}: FAILED: ${p}\n`);
  return problems.length ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(err instanceof UsageError ? `${err.message}\n` : `bench: ${err.stack ?? err.message}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
