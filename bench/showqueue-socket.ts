/**
 * What `showqueue --json` of a big queue costs when it goes through the
 * daemon's control socket (src/main/control-server.ts), against the same
 * listing offline (no daemon: the command takes the queue's lock and opens
 * the store itself).
 *   1. a fresh temporary queue filled with N records (bulk, no SMTP; fill-queue.ts;
 *      small inline bodies, which a listing without --bodies never reads);
 *   2. `serve` on it (one worker thread, --no-runner: nothing delivered while it is listed);
 *   3. `showqueue --json` while serve runs: its output piped into a counting sink
 *      (lines and bytes, not kept); wall time, time to the first line, the client's
 *      peak RSS and CPU; the daemon's RSS before and during, its CPU during, its
 *      main thread's event-loop delay and the time to an SMTP greeting (a probe
 *      connection every 200 ms) during the listing and the second after it;
 *   4. serve stopped, the same listing offline: wall time, peak RSS, CPU.
 * RSS counts the pages of the memory-mapped LMDB file a process touched (page
 * cache: shared, reclaimable); anonymous RSS (RssAnon) is the process's own
 * memory — the number that must not grow with N, since the listing streams.
 *
 *   node --import tsx bench/showqueue-socket.ts [--messages 1000000] [--built] [--keep]
 *     [--body-bytes 100] [--max-minutes 60]
 * Exit status: 0 done, 1 a check failed (a listing's exit status or line count), 2 usage,
 * 4 --max-minutes reached (every child the bench started is SIGKILLed by its pid).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, statSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fillQueue, ownStore } from './fill-queue.ts';
import { ProcSampler } from './procstat.ts';
import { BENCH, GUARD, ROOT, freePort, waitForGreeting } from './targets.ts';

const { values: v } = (() => {
  try {
    return parseArgs({
      options: {
        messages: { type: 'string', default: '1000000' },
        'body-bytes': { type: 'string', default: '100' },
        'max-minutes': { type: 'string', default: '60' },
        built: { type: 'boolean' },
        keep: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    console.error(`showqueue-socket: ${(err as Error).message}`);
    process.exit(2);
  }
})();
if (v.help) {
  console.log('node --import tsx bench/showqueue-socket.ts [--messages 1000000] [--built] [--keep] [--body-bytes 100] [--max-minutes 60]');
  process.exit(0);
}
const N = Number(v.messages);
const bodyBytes = Number(v['body-bytes']);
const maxMinutes = Number(v['max-minutes']);
if (!Number.isInteger(N) || N < 1 || !Number.isInteger(bodyBytes) || bodyBytes < 1 || !(maxMinutes > 0)) {
  console.error('showqueue-socket: --messages and --body-bytes take a positive whole number, --max-minutes a positive number');
  process.exit(2);
}

const MiB = 1024 * 1024;
const mib = (bytes: number): number => Math.round(bytes / MiB);
const secs = (ms: number): number => Math.round(ms) / 1000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Preloaded into the processes the bench starts: at exit, the process writes its
 * own VmHWM (peak RSS of its whole life) and CPU time (all threads) to
 * $BENCH_EXIT_REPORT — exact, where sampling /proc could miss the last moments.
 */
const EXIT_REPORT = `data:text/javascript,${encodeURIComponent(`
  import { isMainThread } from 'node:worker_threads';
  import { readFileSync, writeFileSync } from 'node:fs';
  const file = process.env.BENCH_EXIT_REPORT;
  if (isMainThread && file) {
    process.on('exit', () => {
      const s = readFileSync('/proc/self/status', 'latin1');
      const kib = (name) => Number((s.match(new RegExp(name + ':\\\\s+(\\\\d+) kB')) ?? [])[1] ?? 0);
      const ru = process.resourceUsage();
      writeFileSync(file, JSON.stringify({ hwmKiB: kib('VmHWM'), rssKiB: kib('VmRSS'), anonKiB: kib('RssAnon'), cpuUs: ru.userCPUTime + ru.systemCPUTime }));
    });
  }`)}`;

interface ExitReport { hwmKiB: number; rssKiB: number; anonKiB: number; cpuUs: number }

interface Status { rss: number; anon: number; hwm: number }

function status(pid: number): Status | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'latin1');
    const kib = (name: string): number => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(s)?.[1] ?? 0) * 1024;
    return { rss: kib('VmRSS'), anon: kib('RssAnon'), hwm: kib('VmHWM') };
  } catch {
    return undefined;
  }
}

/** Every child the bench started and has not seen exit; SIGKILLed by pid on a time-out or on exit. */
const children = new Set<ChildProcess>();
const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;
function killChildren(): void {
  for (const c of children) {
    if (alive(c) && c.pid) try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}
process.on('exit', killChildren);

const entry = v.built ? [join(ROOT, 'bin', 'smtp-receive.js')] : ['--import', 'tsx', join(ROOT, 'src', 'main', 'cli.ts')];
const maxSeconds = Math.ceil(maxMinutes * 60) + 60;

function start(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--import', GUARD, '--import', EXIT_REPORT, ...entry, ...args], {
    cwd: ROOT, env: { ...process.env, BENCH_MAX_SECONDS: String(maxSeconds), ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function tail(child: ChildProcess): () => string {
  let t = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { t = (t + d).slice(-8192); });
  return () => t;
}

const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-showqueue-socket-'));
const queueDir = join(dir, 'queue');
let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  if (v.keep) console.error(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
const hardStop = setTimeout(() => {
  console.error(`showqueue-socket: --max-minutes ${maxMinutes} reached: stopping`);
  killChildren();
  cleanup();
  process.exit(4);
}, maxMinutes * 60_000);
hardStop.unref();
process.once('SIGINT', () => {
  killChildren();
  cleanup();
  process.exit(130);
});

/** The daemon main thread's event-loop delay (bench/targets.ts GUARD: SIGUSR2 writes it since the last SIGUSR2 and resets). */
async function loopDelay(pid: number, file: string): Promise<{ p50: number; p99: number; max: number } | undefined> {
  const before = Date.now();
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 100; i++) {
    await sleep(20);
    try {
      const d = JSON.parse(readFileSync(file, 'utf8')) as { p50: number; p99: number; max: number; at: number };
      if (d.at >= before) return { p50: d.p50, p99: d.p99, max: d.max };
    } catch { /* not written yet */ }
  }
  return undefined;
}

/** Time to a 220 greeting on a new connection, ms (undefined: none within 10 s). */
function greetingMs(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = connect({ host: '127.0.0.1', port });
    let done = false;
    const finish = (ms: number | undefined): void => {
      if (done) return;
      done = true;
      resolve(ms);
    };
    s.setTimeout(10_000, () => { finish(undefined); s.destroy(); });
    s.once('data', (d: Buffer) => {
      finish(d.subarray(0, 3).toString() === '220' ? performance.now() - t0 : undefined);
      s.end('QUIT\r\n');
    });
    s.on('error', () => finish(undefined));
    s.on('close', () => finish(undefined));
  });
}

/** Probes every 200 ms until stop() is called; stop() resolves the percentiles. */
function probeLoop(port: number): () => Promise<{ probes: number; failed: number; p50: number; p99: number; max: number }> {
  let running = true;
  const times: number[] = [];
  let failed = 0;
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      const ms = await greetingMs(port);
      if (ms === undefined) failed++;
      else times.push(ms);
      await sleep(Math.max(0, 200 - (performance.now() - t0)));
    }
  })();
  return async () => {
    running = false;
    await loop;
    times.sort((a, b) => a - b);
    const pct = (p: number): number => (times.length ? Math.round(times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))]! * 10) / 10 : 0);
    return { probes: times.length + failed, failed, p50: pct(50), p99: pct(99), max: pct(100) };
  };
}

interface TimelinePoint { seconds: number; lines: number; clientRssMiB: number; clientAnonMiB: number; daemonRssMiB?: number; daemonAnonMiB?: number }

interface Listing {
  code: number | null;
  signal: string | null;
  seconds: number;
  firstLineSeconds: number | undefined;
  lines: number;
  bytes: number;
  endsWithNewline: boolean;
  firstLineOk: boolean;
  clientPeakRssMiB: number;
  clientPeakAnonMiB: number;
  clientCpuSeconds: number | undefined;
  /** Where the memory was at each tenth of the output (growth with progress = not streaming). */
  timeline: TimelinePoint[];
  stderr: string;
}

/** `showqueue --json` into a counting sink, sampling the client (and the daemon, if given) every 50 ms. */
async function listing(daemonPid: number | undefined, timeoutMs: number): Promise<Listing> {
  const report = join(dir, `exit-${Date.now()}.json`);
  const t0 = performance.now();
  const child = start(['showqueue', '--json', '--queue', queueDir], { BENCH_EXIT_REPORT: report });
  const err = tail(child);
  let lines = 0;
  let bytes = 0;
  let first = '';
  let firstDone = false;
  let firstLineAt: number | undefined;
  let last = 0;
  child.stdout!.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    last = chunk[chunk.length - 1]!;
    let from = 0;
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) {
      if (!firstDone) {
        first += chunk.subarray(from, i).toString('utf8');
        firstDone = true;
        firstLineAt = performance.now();
      }
      lines++;
      from = i + 1;
    }
    if (!firstDone && first.length < 1 << 20) first += chunk.subarray(from).toString('utf8');
  });
  let peakRss = 0;
  let peakAnon = 0;
  const timeline: TimelinePoint[] = [];
  let nextTenth = 0;
  const sample = (): void => {
    const c = status(child.pid!);
    if (!c || c.rss === 0) return; // gone, or a zombie (no memory fields left)
    peakRss = Math.max(peakRss, c.hwm, c.rss);
    peakAnon = Math.max(peakAnon, c.anon);
    const done = Math.min(10, Math.floor((lines / N) * 10));
    if (lines > 0 && done >= nextTenth) {
      const d = daemonPid === undefined ? undefined : status(daemonPid);
      timeline.push({
        seconds: secs(performance.now() - t0), lines, clientRssMiB: mib(c.rss), clientAnonMiB: mib(c.anon),
        ...(d ? { daemonRssMiB: mib(d.rss), daemonAnonMiB: mib(d.anon) } : {}),
      });
      nextTenth = done + 1;
    }
  };
  const sampler = setInterval(sample, 50);
  const kill = setTimeout(() => {
    console.error(`showqueue-socket: the listing took over ${timeoutMs / 1000} s: SIGKILL to ${child.pid}`);
    child.kill('SIGKILL');
  }, timeoutMs);
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.once('close', (c, s) => resolve([c, s])));
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  clearTimeout(kill);
  let exit: ExitReport | undefined;
  try {
    exit = JSON.parse(readFileSync(report, 'utf8')) as ExitReport;
    peakRss = Math.max(peakRss, exit.hwmKiB * 1024);
    peakAnon = Math.max(peakAnon, exit.anonKiB * 1024);
  } catch { /* killed: the sampled figures only */ }
  let firstLineOk = false;
  try {
    const o = JSON.parse(first) as { queue_id?: string };
    firstLineOk = typeof o.queue_id === 'string';
  } catch { /* below */ }
  return {
    code, signal, seconds: Math.round(seconds * 100) / 100,
    firstLineSeconds: firstLineAt === undefined ? undefined : secs(firstLineAt - t0),
    lines, bytes, endsWithNewline: last === 10, firstLineOk,
    clientPeakRssMiB: mib(peakRss), clientPeakAnonMiB: mib(peakAnon),
    clientCpuSeconds: exit ? Math.round(exit.cpuUs / 1e4) / 100 : undefined,
    timeline, stderr: err().trim(),
  };
}

function dirBytes(d: string): number {
  let total = 0;
  for (const e of readdirSync(d, { withFileTypes: true })) {
    const p = join(d, e.name);
    if (e.isDirectory()) total += dirBytes(p);
    else if (e.isFile()) total += statSync(p).blocks * 512;
  }
  return total;
}

const problems: string[] = [];
try {
  const load0 = loadavg()[0]!;
  // 1. the fill
  console.error(`filling ${N.toLocaleString('en')} records…`);
  const owned = await ownStore(queueDir);
  let t = performance.now();
  const body = Buffer.from(`Subject: bench\r\n\r\n${'x'.repeat(Math.max(0, bodyBytes - 20))}\r\n`);
  const fillRates = await fillQueue(owned.store, N, Date.now(), 0, body);
  const fillSeconds = (performance.now() - t) / 1000;
  const queued = owned.store.count();
  await owned.close(); // serve takes the queue next
  if (queued !== N) problems.push(`the fill left ${queued} records, not ${N}`);
  const queueMiB = mib(dirBytes(queueDir));
  console.error(`filled in ${fillSeconds.toFixed(1)} s; the queue directory takes ${queueMiB} MiB on disk`);

  // 2. the daemon
  const port = await freePort();
  const loopFile = join(dir, 'loop-delay.json');
  t = performance.now();
  const daemon = start(
    ['serve', '--listen', `127.0.0.1:${port}`, '--queue', queueDir, '--no-reverse-dns', '--workers', '1', '--hostname', 'bench.invalid', '--no-runner', '--metrics', 'off', '--auth', 'off'],
    { BENCH_LOOP_DELAY_FILE: loopFile, BENCH_EXIT_REPORT: join(dir, 'exit-serve.json') },
  );
  const daemonErr = tail(daemon);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`serve did not say "listening on" within 120 s:\n${daemonErr()}`)), 120_000);
    daemon.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    daemon.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`serve exited during start-up (${code ?? signal}):\n${daemonErr()}`));
    });
  });
  await waitForGreeting(port, daemon, 'serve');
  const daemonStartSeconds = (performance.now() - t) / 1000;
  const pid = daemon.pid!;
  await sleep(1000); // settle
  const idleProbe = probeLoop(port);
  await sleep(2000);
  const idleProbes = await idleProbe();
  const idle = status(pid)!;
  await loopDelay(pid, loopFile); // resets the histogram

  // 3. the listing through the socket
  console.error('showqueue --json through the control socket…');
  const daemonSampler = new ProcSampler(pid, false, 50);
  daemonSampler.start();
  const stopProbes = probeLoop(port);
  const socket = await listing(pid, 20 * 60_000);
  await sleep(1000); // the daemon's side of the listing may end (its response's 'close') after the client has exited
  const busyProbes = await stopProbes();
  const daemonDuring = daemonSampler.stop();
  const duringLoop = await loopDelay(pid, loopFile);
  const after = status(pid)!;

  // 4. offline
  daemon.kill('SIGTERM');
  const killDaemon = setTimeout(() => daemon.kill('SIGKILL'), 30_000);
  const daemonExit = alive(daemon) ? await new Promise<number | string | null>((resolve) => daemon.once('exit', (c, s) => resolve(c ?? s))) : daemon.exitCode;
  clearTimeout(killDaemon);
  console.error('showqueue --json offline…');
  const offline = await listing(undefined, 20 * 60_000);

  for (const [name, l] of [['socket', socket], ['offline', offline]] as const) {
    if (l.code !== 0) problems.push(`${name} listing: exit ${l.code ?? l.signal}${l.stderr ? `: ${l.stderr.slice(-500)}` : ''}`);
    if (l.lines !== N) problems.push(`${name} listing: ${l.lines} lines, not ${N}`);
    if (!l.firstLineOk || !l.endsWithNewline) problems.push(`${name} listing: the output is not JSON Lines`);
  }
  if (socket.bytes !== offline.bytes) problems.push(`socket and offline listings differ in size: ${socket.bytes} vs ${offline.bytes} bytes`);
  if (daemonExit !== 0) problems.push(`serve exited with ${daemonExit} on SIGTERM:\n${daemonErr().slice(-1000)}`);

  const result = {
    bench: 'showqueue-socket', at: new Date().toISOString(), cores: availableParallelism(), node: process.version,
    loadavg: { start: load0, end: loadavg()[0] }, messages: N, bodyBytes, built: !!v.built,
    fill: { seconds: Math.round(fillSeconds * 10) / 10, ...fillRates, queueDirMiB: queueMiB },
    daemon: {
      startSeconds: Math.round(daemonStartSeconds * 100) / 100,
      before: { rssMiB: mib(idle.rss), anonMiB: mib(idle.anon), hwmMiB: mib(idle.hwm) },
      during: {
        peakRssMiB: mib(daemonDuring.peakRssBytes), peakAnonMiB: mib(daemonDuring.peakAnonBytes),
        hwmMiB: mib(daemonDuring.hwmBytes), cpuSeconds: daemonDuring.cpuSeconds, samples: daemonDuring.samples,
      },
      after: { rssMiB: mib(after.rss), anonMiB: mib(after.anon) },
      loopDelayMs: duringLoop,
      greetingMs: { idle: idleProbes, duringListing: busyProbes },
      exit: daemonExit,
      stderr: daemonErr().trim().slice(-4000),
    },
    socket,
    offline,
    problems,
  };
  console.log(JSON.stringify(result, null, 2));
  const rows: Array<[string, string, string]> = [
    ['wall time, s', String(socket.seconds), String(offline.seconds)],
    ['time to first line, s', String(socket.firstLineSeconds), String(offline.firstLineSeconds)],
    ['lines / bytes', `${socket.lines.toLocaleString('en')} / ${socket.bytes.toLocaleString('en')}`, `${offline.lines.toLocaleString('en')} / ${offline.bytes.toLocaleString('en')}`],
    ['lines/s', (socket.lines / socket.seconds).toFixed(0), (offline.lines / offline.seconds).toFixed(0)],
    ['client peak RSS / anon, MiB', `${socket.clientPeakRssMiB} / ${socket.clientPeakAnonMiB}`, `${offline.clientPeakRssMiB} / ${offline.clientPeakAnonMiB}`],
    ['client CPU, s', String(socket.clientCpuSeconds), String(offline.clientCpuSeconds)],
    ['daemon RSS / anon before, MiB', `${mib(idle.rss)} / ${mib(idle.anon)}`, '–'],
    ['daemon peak RSS / anon during, MiB', `${mib(daemonDuring.peakRssBytes)} / ${mib(daemonDuring.peakAnonBytes)}`, '–'],
    ['daemon CPU during, s', String(daemonDuring.cpuSeconds), '–'],
    ['daemon loop delay p99 / max, ms', duringLoop ? `${duringLoop.p99} / ${duringLoop.max}` : '?', '–'],
    ['SMTP greeting p50 / p99 / max, ms (idle)', `${idleProbes.p50} / ${idleProbes.p99} / ${idleProbes.max}`, '–'],
    ['SMTP greeting p50 / p99 / max, ms (listing)', `${busyProbes.p50} / ${busyProbes.p99} / ${busyProbes.max} (${busyProbes.probes} probes, ${busyProbes.failed} failed)`, '–'],
  ];
  console.log(`\nshowqueue --json of ${N.toLocaleString('en')} records (fill ${fillSeconds.toFixed(0)} s, queue ${queueMiB} MiB on disk)\n`);
  console.log('| | through the socket | offline |\n|---|---:|---:|');
  for (const [k, a, b] of rows) console.log(`| ${k} | ${a} | ${b} |`);
  console.log('\nmemory along the listing (the first sample past each tenth of the lines):\n');
  console.log('| tenth | socket: s | lines | client RSS / anon MiB | daemon RSS / anon MiB | offline: s | lines | client RSS / anon MiB |\n|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (let i = 0; i < Math.max(socket.timeline.length, offline.timeline.length); i++) {
    const p = socket.timeline[i];
    const o = offline.timeline[i];
    console.log(`| ${i} | ${p ? `${p.seconds} | ${p.lines.toLocaleString('en')} | ${p.clientRssMiB} / ${p.clientAnonMiB} | ${p.daemonRssMiB ?? '?'} / ${p.daemonAnonMiB ?? '?'}` : ' | | | '} | ${o ? `${o.seconds} | ${o.lines.toLocaleString('en')} | ${o.clientRssMiB} / ${o.clientAnonMiB}` : ' | | '} |`);
  }
  await mkdir(join(BENCH, 'results'), { recursive: true });
  const file = join(BENCH, 'results', `showqueue-socket-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, JSON.stringify(result, null, 2));
  console.log(`\nwritten ${file}`);
  for (const p of problems) console.error(`PROBLEM: ${p}`);
  if (problems.length) process.exitCode = 1;
} catch (err) {
  console.error(`showqueue-socket: ${(err as Error).stack}`);
  process.exitCode = 1;
} finally {
  killChildren();
  cleanup();
  clearTimeout(hardStop);
}
