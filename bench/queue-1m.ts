/**
 * A queue of a million messages: does receiving slow down as the queue grows,
 * and what does listing it cost?
 *   1. `serve` on an empty queue: SMTP enqueue rate (16 sessions, 4 KiB, one message per connection);
 *   2. the queue filled to N records (bulk, no SMTP; see fill-queue.ts);
 *   3. `serve` again on the full queue: the same SMTP load;
 *   4. `showqueue --json` of the whole queue to /dev/null: wall time and the process's peak RSS.
 *
 *   node --import tsx bench/queue-1m.ts [--size 1000000] [--messages 5000] [--built]
 *   (also: npm run bench -- queue-1m)
 */
import { spawn } from 'node:child_process';
import { openSync, readFileSync, closeSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fillQueue, ownStore } from './fill-queue.ts';
import { runLoad, type LoadResult } from './loadgen.ts';
import { ROOT, startTarget } from './targets.ts';

const { values: v } = parseArgs({
  options: { size: { type: 'string', default: '1000000' }, messages: { type: 'string', default: '5000' }, built: { type: 'boolean' } },
});
const size = Number(v.size);
const messages = Number(v.messages);

async function smtpRate(queueDir: string): Promise<LoadResult> {
  const target = await startTarget('smtp-receive', { built: v.built, maxSeconds: 900, serveArgs: ['--queue', queueDir] });
  try {
    return await runLoad({
      host: '127.0.0.1', port: target.port, sessions: 16, messages, size: 4096, rcpts: 1, pipelining: false,
      perConnection: 1, rcptDomain: 'localhost', timeoutMs: 300_000, serverPid: target.pid,
    });
  } finally {
    await target.stop();
  }
}

/**
 * Runs `showqueue --json` to /dev/null; wall time, the child's peak RSS (VmHWM) and
 * peak anonymous RSS (sampled). RSS counts the pages of the memory-mapped LMDB file
 * that the process touched (page cache, shared and reclaimable); anonymous RSS is
 * the process's own memory.
 */
async function listing(queueDir: string): Promise<{ seconds: number; peakRssMiB: number; peakAnonMiB: number; code: number | null }> {
  const entry = v.built ? [join(ROOT, 'bin', 'smtp-receive.js')] : ['--import', 'tsx', join(ROOT, 'src', 'main', 'cli.ts')];
  const devnull = openSync('/dev/null', 'w');
  const t0 = performance.now();
  const child = spawn(process.execPath, [...entry, 'showqueue', '--json', '--queue', queueDir], { cwd: ROOT, stdio: ['ignore', devnull, 'ignore'] });
  let hwm = 0;
  let anon = 0;
  const sample = setInterval(() => {
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      hwm = Math.max(hwm, Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0));
      anon = Math.max(anon, Number(/RssAnon:\s+(\d+) kB/.exec(status)?.[1] ?? 0));
    } catch { /* exited */ }
  }, 50);
  const kill = setTimeout(() => child.kill('SIGKILL'), 600_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearInterval(sample);
  clearTimeout(kill);
  closeSync(devnull);
  return { seconds: (performance.now() - t0) / 1000, peakRssMiB: Math.round(hwm / 1024), peakAnonMiB: Math.round(anon / 1024), code };
}

const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-1m-'));
try {
  const queueDir = join(dir, 'queue');
  const empty = await smtpRate(queueDir);
  // serve has stopped: the queue is ours until the next serve
  const owned = await ownStore(queueDir);
  const t0 = performance.now();
  const fillRates = await fillQueue(owned.store, size, Date.now(), 0, Buffer.alloc(4096, 'x'));
  const fillSeconds = (performance.now() - t0) / 1000;
  const queued = owned.store.count();
  await owned.close();
  const full = await smtpRate(queueDir);
  const list = await listing(queueDir);
  const rows = [
    ['SMTP enqueue, empty queue', `${empty.msgPerSec.toFixed(0)} msg/s, p99 ${empty.latencyMs.p99} ms, ${empty.accepted}/${messages} accepted`],
    [`bulk fill to ${queued.toLocaleString('en')}`, `${fillSeconds.toFixed(0)} s (${fillRates.firstRate.toLocaleString('en')}/s first tenth, ${fillRates.lastRate.toLocaleString('en')}/s last)`],
    [`SMTP enqueue, ${queued.toLocaleString('en')} queued`, `${full.msgPerSec.toFixed(0)} msg/s, p99 ${full.latencyMs.p99} ms, ${full.accepted}/${messages} accepted`],
    ['end ÷ start', (full.msgPerSec / empty.msgPerSec).toFixed(2)],
    [`showqueue --json of ${(queued + messages).toLocaleString("en")}`, `${list.seconds.toFixed(1)} s, peak anonymous RSS ${list.peakAnonMiB} MiB (RSS with the mapped LMDB file: ${list.peakRssMiB} MiB), exit ${list.code}`],
  ];
  console.log('| step | result |\n|---|---|');
  for (const [k, r] of rows) console.log(`| ${k} | ${r} |`);
  await mkdir(join(ROOT, 'bench', 'results'), { recursive: true });
  const out = join(ROOT, 'bench', 'results', `queue-1m-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(out, JSON.stringify({ cores: availableParallelism(), node: process.version, size, messages, built: !!v.built, empty, full, fillSeconds, fillRates, list }, null, 2));
  console.log(`\nwritten ${out}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
