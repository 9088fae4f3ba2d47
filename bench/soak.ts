/**
 * The soak: nothing lost over a long run with everything going at once.
 * `serve` receives 4 KiB messages from 16 sessions and delivers each at once
 * (fixtures/soak-deliver.ts checks every body byte for byte; every Nth attempt
 * fails and is retried); every 2 s `showqueue --json` and `flush` run against the
 * same queue from other processes (through serve's control socket; between a
 * kill and the restart they open the queue themselves); every K seconds (at a random point of the
 * second half) `serve` is SIGKILLed mid-load and started again on the same queue.
 * At the end the queue is drained and every message that got its 250 must have
 * been delivered intact. Exit status 1 when one was lost or corrupt, a process
 * crashed on its own, a queue command failed (other than one talking to serve
 * when it was killed), or the queue did not drain.
 *
 *   node --import tsx bench/soak.ts [--minutes 10] [--kill-every 20] [--sessions 16] [--fail-every 20]
 *     [--tools showqueue,flush] [--tools-every MS] [--built]   (--kill-every 0: no kills; --tools '': no tools)
 *   (also: npm run bench -- soak; --quick: 1 minute)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { findDaemon } from '../src/main/control-client.ts';
import { runLoad } from './loadgen.ts';
import { BENCH, GUARD, ROOT, freePort, waitForGreeting } from './targets.ts';

const { values: v } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' }, 'kill-every': { type: 'string', default: '20' },
    sessions: { type: 'string', default: '16' }, 'fail-every': { type: 'string', default: '20' },
    workers: { type: 'string', default: '2' }, tools: { type: 'string', default: 'showqueue,flush' }, 'tools-every': { type: 'string', default: '2000' }, built: { type: 'boolean' },
  },
});
const minutes = Number(v.minutes);
const killEvery = Number(v['kill-every']) * 1000;
const SIZE = 4096;
const entry = v.built ? [join(ROOT, 'bin', 'smtp-receive.js')] : ['--import', 'tsx', join(ROOT, 'src', 'main', 'cli.ts')];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-soak-'));
const queueDir = join(dir, 'queue');
const deliveredFile = join(dir, 'delivered.txt');
await mkdir(queueDir);
await writeFile(deliveredFile, '');
const port = await freePort();
const crashes: string[] = [];

interface Serve { child: ChildProcess; killed: boolean; exited: Promise<void>; tail: () => string }
const starts: number[] = [];
const killTimes: number[] = [];

async function startServe(): Promise<Serve> {
  starts.push(Date.now());
  const child = spawn(process.execPath, ['--import', GUARD, '--import', 'tsx', ...entry, 'serve',
    '--listen', `127.0.0.1:${port}`, '--queue', queueDir, '--receiver', join(BENCH, 'fixtures', 'soak-deliver.ts'),
    '--no-reverse-dns', '--hostname', 'soak.invalid', '--workers', v.workers!, '--retry-min', '500', '--retry-max', '2000', '--deliver-timeout', '5000', '--metrics', 'off', '--auth', 'off'], {
    cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, SOAK_DELIVERED: deliveredFile, SOAK_FAIL_EVERY: v['fail-every'], SOAK_SIZE: String(SIZE), BENCH_MAX_SECONDS: String(minutes * 60 + 600) },
  });
  let tail = '';
  const log = createWriteStream(join(dir, `serve-${starts.length}.log`));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { tail = (tail + d).slice(-4000); log.write(d); });
  const s: Serve = {
    child, killed: false, tail: () => tail,
    exited: new Promise((resolve) => child.once('exit', (code, signal) => {
      if (!s.killed && (code !== 0 || signal)) crashes.push(`serve exited by itself (${signal ?? `code ${code}`}): ${tail.slice(-1500)}`);
      resolve();
    })),
  };
  await waitForGreeting(port, child, 'serve');
  return s;
}

/**
 * showqueue --json and flush from other processes, one at a time; counts runs and failures. A command
 * that was talking to serve when serve was SIGKILLed fails (its listing cut short, its request reset):
 * that is counted apart (cutByKill), not as a failure.
 */
const ops = { runs: 0, failures: [] as string[], cutByKill: 0, busy: false };
function runOp(args: string[], check?: (out: string) => void): Promise<void> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [...entry, ...args, '--queue', queueDir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      ops.runs++;
      try {
        const ended = Date.now();
        const cut = /the daemon went away during/.test(err) && killTimes.some((k) => k >= started && k <= ended);
        if (code !== 0 && signal === null && cut) ops.cutByKill++;
        else if (code !== 0) throw new Error(`exit ${signal ?? code}: ${err.slice(-800)}`);
        else check?.(out);
      } catch (e) {
        ops.failures.push(`${args[0]}: ${(e as Error).message}`);
      }
      resolve();
    });
  });
}
const accepted = new Set<string>();
let kills = 0;
let serve = await startServe();
// the queue commands start once serve has created the queue
const tools = v.tools!.split(',').filter(Boolean);
const opsTimer = setInterval(() => {
  if (ops.busy || tools.length === 0) return;
  ops.busy = true;
  void (async () => {
    // JSON Lines: each must parse and carry a queue id
    if (tools.includes('showqueue')) await runOp(['showqueue', '--json'], (out) => {
      for (const line of out.split('\n')) if (line && typeof (JSON.parse(line) as { queue_id?: unknown }).queue_id !== 'string') throw new Error(`no queue_id: ${line}`);
    });
    if (tools.includes('flush')) await runOp(['flush']);
  })().finally(() => { ops.busy = false; });
}, Number(v['tools-every']));
const t0 = performance.now();
const deadline = Date.now() + minutes * 60_000;
try {
  while (Date.now() < deadline) {
    const ac = new AbortController();
    const cycle = Math.min(killEvery ? killEvery * (0.5 + Math.random() / 2) : Infinity, deadline - Date.now());
    const load = runLoad({
      host: '127.0.0.1', port, sessions: Number(v.sessions), messages: 50_000_000, size: SIZE, rcpts: 1, pipelining: false,
      perConnection: 10, rcptDomain: 'localhost', timeoutMs: cycle + 120_000, signal: ac.signal,
      onAccepted: (line) => { const id = /queued as (\S+)/.exec(line)?.[1]; if (id) accepted.add(id); },
    });
    await sleep(cycle);
    if (killEvery && Date.now() < deadline) {
      serve.killed = true;
      serve.child.kill('SIGKILL');
      killTimes.push(Date.now());
      kills++;
      ac.abort();
      await Promise.all([load, serve.exited]);
      serve = await startServe();
    } else {
      ac.abort();
      await load;
    }
    if (crashes.length) break;
  }
} finally {
  clearInterval(opsTimer);
}
const loadSeconds = (performance.now() - t0) / 1000;
while (ops.busy) await sleep(100);

// drain: the retries are due within seconds (--retry-min 500 --retry-max 2000). serve owns the
// queue: its size comes from serve's control socket (no other process may open the store)
let left = -1;
const drainUntil = Date.now() + 180_000;
for (;;) {
  const daemon = await findDaemon(queueDir).catch(() => undefined);
  if (daemon) left = daemon.status.messages;
  if (left === 0 || Date.now() > drainUntil || crashes.length) break;
  await sleep(1000);
}
serve.killed = true; // from here an exit is ours
serve.child.kill('SIGTERM');
const stopped = await Promise.race([serve.exited.then(() => serve.child.exitCode), sleep(30_000).then(() => 'timeout')]);
if (stopped !== 0) crashes.push(`serve did not stop cleanly on SIGTERM (${stopped}): ${serve.tail().slice(-1500)}`);

const lines = readFileSync(deliveredFile, 'utf8').split('\n').filter(Boolean);
const delivered = new Set<string>();
const bad: string[] = [];
for (const line of lines) {
  const [id, verdict] = line.split(' ', 2) as [string, string];
  delivered.add(id);
  if (verdict !== 'ok') bad.push(line);
}
const lost = [...accepted].filter((id) => !delivered.has(id));
/** A lost id's time (its first 9 characters: base-36 ms) against the nearest kill: did it go with a crash? */
const lostTimes = lost.map((id) => {
  const at = parseInt(id.slice(0, 9), 36);
  const kill = killTimes.reduce((best, k) => (Math.abs(k - at) < Math.abs(best - at) ? k : best), Infinity);
  return { id, at: new Date(at).toISOString(), msFromNearestKill: Number.isFinite(kill) ? kill - at : null };
});
const result = {
  minutes, killEvery: killEvery / 1000, sessions: Number(v.sessions), failEvery: Number(v['fail-every']),
  accepted: accepted.size, acceptedPerSec: Math.round(accepted.size / loadSeconds), kills,
  deliveries: lines.length, deliveredUnique: delivered.size, redeliveries: lines.length - delivered.size,
  deliveredWithout250: [...delivered].filter((id) => !accepted.has(id)).length,
  lost: lost.length, corrupt: bad.length, leftInQueue: left, queueToolRuns: ops.runs, queueToolFailures: ops.failures.length,
  queueToolRunsCutByKill: ops.cutByKill, crashes: crashes.length,
};
console.log('| accepted (250) | msg/s | kills | delivered | re-deliveries | delivered without a 250 seen | lost | corrupt | left | tool runs / failures | crashes |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
console.log(`| ${result.accepted} | ${result.acceptedPerSec} | ${kills} | ${result.deliveredUnique} | ${result.redeliveries} | ${result.deliveredWithout250} | ${result.lost} | ${result.corrupt} | ${left} | ${ops.runs} / ${ops.failures.length}${ops.cutByKill ? ` (+${ops.cutByKill} cut by a kill)` : ''} | ${crashes.length} |`);
for (const x of [...lost.slice(0, 5).map((id) => `lost: ${id}`), ...bad.slice(0, 5), ...ops.failures.slice(0, 5), ...crashes]) console.log(x);
const file = join(BENCH, 'results', `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
await mkdir(join(BENCH, 'results'), { recursive: true });
await writeFile(file, `${JSON.stringify({ cores: availableParallelism(), node: process.version, built: !!v.built, ...result, lostIds: lostTimes, killTimes, starts, bad, toolFailures: ops.failures, crashes }, null, 2)}\n`);
console.log(`\nwritten ${file}`);
const failed = lost.length || bad.length || crashes.length || ops.failures.length || left !== 0;
if (failed) console.log(`kept for a look: ${dir} (queue, delivered.txt, serve-N.log)`);
else await rm(dir, { recursive: true, force: true });
process.exitCode = failed ? 1 : 0;
