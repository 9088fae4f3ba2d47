/**
 * The servers under test, each started by the bench on 127.0.0.1, a free port
 * and its own fresh temporary directory, and stopped by the pid it started.
 *
 * - `smtp-receive`: `node --import tsx src/main/cli.ts serve …`, or with `built`
 *   `node bin/smtp-receive.js serve …` (dist/ as it is: the bench does not build it);
 *   with no receiver module, `--no-runner` (nothing delivered: receive only);
 *   `--metrics off`.
 * - `smtp-receive-metrics`: the same with `--metrics` on (a free port), its /metrics
 *   scraped every second while it runs: what metrics cost (`--compare smtp-receive-metrics`).
 * - `postfix`: a private instance (bench/postfix/setup.sh), master in the foreground.
 * - `sink` / `sink-nofsync`: bench/sink.ts, a bare smtp-server writing files.
 * - `haraka`: when installed (bench/haraka/install.sh), an instance by
 *   bench/haraka/setup.sh with an fdatasync-per-message queue plugin.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findDaemon } from '../src/main/control-client.ts';
import { processTree } from './procstat.ts';

export const BENCH = dirname(fileURLToPath(import.meta.url));
export const ROOT = dirname(BENCH);
/**
 * Preloaded into every server the bench starts (`node --import GUARD …`): the
 * server stops itself (SIGTERM to itself) when its parent, the bench, goes away,
 * or after BENCH_MAX_SECONDS. So no run leaves a server behind.
 */
export const GUARD = `data:text/javascript,${encodeURIComponent(`
  import { isMainThread } from 'node:worker_threads';
  import { monitorEventLoopDelay } from 'node:perf_hooks';
  import { writeFileSync } from 'node:fs';
  if (isMainThread && process.env.BENCH_LOOP_DELAY_FILE) {
    // the main thread's event-loop delay: SIGUSR2 writes the histogram since the last SIGUSR2, then resets it
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    process.on('SIGUSR2', () => {
      const ms = (ns) => Math.round(ns / 1e4) / 100;
      writeFileSync(process.env.BENCH_LOOP_DELAY_FILE, JSON.stringify({ p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), at: Date.now() }));
      h.reset();
    });
  }
  if (isMainThread) {
    const parent = process.ppid;
    const stop = () => {
      process.kill(process.pid, 'SIGTERM');
      setTimeout(() => process.exit(1), 10000).unref();
    };
    setInterval(() => { if (process.ppid !== parent) stop(); }, 1000).unref();
    setTimeout(stop, Number(process.env.BENCH_MAX_SECONDS ?? 1800) * 1000).unref();
  }`)}`;

export const TARGETS = ['smtp-receive', 'smtp-receive-metrics', 'postfix', 'sink', 'sink-nofsync', 'haraka'] as const;
export type TargetName = (typeof TARGETS)[number];

export interface TargetOptions {
  /** smtp-receive: a receiver module (e.g. bench/fixtures/cpu-predeliver.ts). */
  receiver?: string;
  /** smtp-receive: more `serve` flags. */
  serveArgs?: string[];
  /** smtp-receive: run the built CLI (bin/, dist/) instead of the sources under tsx. */
  built?: boolean;
  /** Longest life of the server, s (it stops itself after it). */
  maxSeconds: number;
}

export interface Target {
  name: TargetName;
  pid: number;
  port: number;
  /** CPU/RSS are summed over the process tree (Postfix's many processes). */
  tree: boolean;
  /**
   * The server delivers what it accepted after the 250, from a queue (Postfix:
   * to discard; smtp-receive: when its runner runs). The sinks and Haraka's
   * queue plugin store each message as the final step: nothing follows.
   */
  delivers: boolean;
  /** Messages accepted and not delivered yet (0 when `delivers` is false). */
  queued(): Promise<number>;
  /**
   * Resolves when `queued()` reads 0 (polled every `intervalMs`), with 0; or,
   * after `timeoutMs`, with the number still queued.
   */
  untilDelivered(timeoutMs: number, intervalMs?: number): Promise<number>;
  /** What the server wrote to stderr (last 8 KiB) and how many lines. */
  log(): { lines: number; tail: string };
  stop(): Promise<void>;
  /** Main-thread event-loop delay since the previous call (Node targets only). */
  loopDelay(): Promise<LoopDelay | undefined>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once a connection to the port gets a 220 greeting. */
export async function waitForGreeting(port: number, child: ChildProcess, what: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode) throw new Error(`${what} exited during start-up`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.setTimeout(2000, () => s.destroy());
      s.once('data', (d: Buffer) => {
        resolve(d.subarray(0, 3).toString() === '220');
        s.end('QUIT\r\n');
      });
      s.on('error', () => resolve(false));
      s.on('close', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`${what} did not greet on port ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));

/** SIGTERM to the pid we started, SIGKILL after `graceMs`; then the same for descendants left behind. */
async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  const pid = child.pid!;
  const family = processTree(pid).filter((p) => p !== pid);
  if (child.exitCode === null && !child.signalCode) {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited(child);
    clearTimeout(timer);
  }
  for (let i = 0; i < 50; i++) {
    const left = family.filter((p) => existsSync(`/proc/${p}`));
    if (left.length === 0) return;
    if (i === 49) for (const p of left) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function capture(child: ChildProcess): () => { lines: number; tail: string } {
  let tail = '';
  let lines = 0;
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    for (let i = d.indexOf('\n'); i >= 0; i = d.indexOf('\n', i + 1)) lines++;
    tail = (tail + d).slice(-8192);
  });
  child.stdout?.resume();
  return () => ({ lines, tail });
}

/** Every child the bench started and has not stopped yet (stopped on exit, whatever happens). */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Runs bench/NAME/setup.sh DIR PORT; its output (what to start). On failure the directory goes. */
async function setup(name: 'postfix' | 'haraka', dir: string, port: number): Promise<string> {
  try {
    return execFileSync('sh', [join(BENCH, name, 'setup.sh'), dir, String(port)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${name} setup failed: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
  }
}

export async function startTarget(name: TargetName, o: TargetOptions): Promise<Target> {
  const dir = await mkdtemp(join(tmpdir(), `bench-${name}-`));
  const port = await freePort();
  const loopDelayFile = join(dir, 'loop-delay.json');
  const env = { ...process.env, BENCH_MAX_SECONDS: String(o.maxSeconds), BENCH_LOOP_DELAY_FILE: loopDelayFile };
  let child: ChildProcess;
  let tree = false;
  let delivers = false;
  let queued = (): Promise<number> => Promise.resolve(0);
  let scraper: NodeJS.Timeout | undefined;
  if (name === 'smtp-receive' || name === 'smtp-receive-metrics') {
    const metricsPort = name === 'smtp-receive-metrics' ? await freePort() : undefined;
    // no receiver chosen (--receive-only): --no-runner, so messages stay queued (serve's default Maildir receiver would deliver into ./mail)
    const chosen = !!o.receiver || (o.serveArgs ?? []).some((a) => /^--(receiver|maildir|webhook|relay)\b/.test(a));
    // authentication off unless asked for (bench/auth.ts): like Postfix without milters, and no look-ups to the machine's DNS
    const auth = (o.serveArgs ?? []).includes('--auth') ? [] : ['--auth', 'off'];
    // every bench session comes from 127.0.0.1: no per-address limit beyond the overall one
    const args = ['--listen', `127.0.0.1:${port}`, '--queue', join(dir, 'queue'), '--no-reverse-dns', '--max-clients-per-ip', '0',
      '--hostname', 'bench.invalid', ...(o.receiver ? ['--receiver', o.receiver] : []), ...(chosen ? [] : ['--no-runner']), ...auth, ...(o.serveArgs ?? []),
      '--metrics', metricsPort ? `127.0.0.1:${metricsPort}` : 'off'];
    // like Prometheus, a bit more often than usual: one scrape a second (a failed one is retried the next second)
    if (metricsPort) {
      scraper = setInterval(() => {
        fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text(), () => '').catch(() => '');
      }, 1000);
      scraper.unref();
    }
    // a receiver module in TypeScript needs tsx in the built CLI too (workers inherit the flag)
    const tsx = !o.built || o.receiver?.endsWith('.ts') ? ['--import', 'tsx'] : [];
    const entry = o.built ? [join(ROOT, 'bin', 'smtp-receive.js'), 'serve'] : [join(ROOT, 'src', 'main', 'cli.ts'), 'serve'];
    child = spawn(process.execPath, ['--import', GUARD, ...tsx, ...entry, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    delivers = !args.includes('--no-runner');
    // the daemon's own count (GET /status on QUEUE/control.sock): records not yet removed, i.e. not delivered
    queued = async () => {
      const daemon = await findDaemon(join(dir, 'queue'));
      if (!daemon) throw new Error('smtp-receive: no daemon answers on the queue\'s control socket');
      return daemon.status.messages;
    };
  } else if (name === 'sink' || name === 'sink-nofsync') {
    const args = ['--port', String(port), '--dir', dir, ...(name === 'sink-nofsync' ? ['--nofsync'] : [])];
    child = spawn(process.execPath, ['--import', GUARD, '--import', 'tsx', join(BENCH, 'sink.ts'), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  } else if (name === 'postfix') {
    const etc = await setup('postfix', dir, port);
    const master = join(execFileSync('postconf', ['-dh', 'daemon_directory'], { encoding: 'utf8' }).trim(), 'master');
    // -d: stay in the foreground (its pid is ours); -e: exit by itself after maxSeconds
    child = spawn(master, ['-c', etc, '-d', '-e', String(o.maxSeconds)], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    tree = true;
    delivers = true;
    queued = () => postfixQueued(join(dir, 'spool'));
  } else if (name === 'haraka') {
    const bin = await setup('haraka', dir, port);
    // a master and one cluster worker (Haraka's default `nodes`); the guard stops each when its parent goes
    child = spawn(process.execPath, ['--import', GUARD, bin, '-c', dir], {
      cwd: dir, env: { ...env, HARAKA_BENCH_QUEUE: join(dir, 'queue') }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    tree = true;
  } else {
    throw new Error(`unknown target ${JSON.stringify(name)} (known: ${TARGETS.join(', ')})`);
  }
  running.add(child);
  const log = capture(child);
  const stop = async (): Promise<void> => {
    clearInterval(scraper);
    await stopChild(child);
    running.delete(child);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForGreeting(port, child, name);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}${log().tail ? `:\n${log().tail}` : ''}`);
  }
  /** Node targets: the event-loop delay of the main thread since the previous call (SIGUSR2 to the guard). */
  const loopDelay = async (): Promise<LoopDelay | undefined> => {
    if (tree) return undefined;
    const before = Date.now();
    process.kill(child.pid!, 'SIGUSR2');
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 20));
      try {
        const d = JSON.parse(readFileSync(loopDelayFile, 'utf8')) as LoopDelay & { at: number };
        if (d.at >= before) return { p50: d.p50, p99: d.p99, max: d.max };
      } catch { /* not written yet */ }
    }
    return undefined;
  };
  const untilDelivered = async (timeoutMs: number, intervalMs = 10): Promise<number> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const n = await queued();
      if (n === 0 || Date.now() >= until) return n;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  };
  return { name, pid: child.pid!, port, tree, delivers, queued, untilDelivered, log, stop, loopDelay };
}

/**
 * Messages in a Postfix queue: files under maildrop, incoming, active, deferred
 * and hold (deferred and defer are hashed into subdirectories). Read in the
 * order messages move (maildrop → incoming → active → deferred), so a file
 * renamed into a later directory while we read is still counted there.
 */
async function postfixQueued(spool: string): Promise<number> {
  const count = async (path: string): Promise<number> => {
    let entries;
    try {
      entries = await readdir(path, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    let n = 0;
    for (const e of entries) n += e.isDirectory() ? await count(join(path, e.name)) : 1;
    return n;
  };
  let n = 0;
  for (const q of ['maildrop', 'incoming', 'active', 'deferred', 'hold']) n += await count(join(spool, q));
  return n;
}

/** Event-loop delay of a server's main thread over one run, ms. */
export interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
}
