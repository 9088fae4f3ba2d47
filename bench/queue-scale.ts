/**
 * Queue scale: does finding due messages, and the runner's memory, stay flat
 * as the queue grows? Fills a fresh queue to each size (default 10k, 100k, 1M;
 * 1% of them due now, the rest in the future), then measures:
 *   - the time of one due-index look-up (`dueIds(now, 100)`, median of 200),
 *   - a runner pass over the due messages with a trivial deliver: wall time and
 *     the process's RSS before/after,
 *   - the enqueue rate while filling (first vs last 10% of the fill).
 *
 *   node --expose-gc --import tsx bench/queue-scale.ts [--sizes 10000,100000,1000000] [--due-fraction 0.01]
 * (RSS includes the LMDB pages the process touched — the map is file-backed —
 * and the worker threads; the main thread's JS heap is the runner's own memory.)
 * Writes JSON to bench/results/queue-scale-<time>.json and prints a table.
 */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fillQueue, ownStore } from './fill-queue.ts';
import { WorkerPool } from '../src/main/pool.ts';
import { QueueRunner } from '../src/main/runner.ts';

const { values } = parseArgs({
  options: { sizes: { type: 'string', default: '10000,100000,1000000' }, 'due-fraction': { type: 'string', default: '0.01' } },
});
const sizes = values.sizes!.split(',').map(Number);
const dueFraction = Number(values['due-fraction']);
const RECEIVER = new URL('./fixtures/trivial-deliver.ts', import.meta.url).pathname;
const BODY = Buffer.alloc(4096, 'x');

const rssMiB = (): number => Math.round(process.memoryUsage().rss / 2 ** 20);
/** Anonymous RSS (heap, stacks, buffers): RSS without the file-backed LMDB pages the process mapped. */
const anonMiB = (): number => {
  const m = /RssAnon:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : -1;
};
const heapMiB = (): number => {
  global.gc?.();
  return Math.round(process.memoryUsage().heapUsed / 2 ** 20);
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Row {
  queued: number;
  due: number;
  fillRateFirst: number;
  fillRateLast: number;
  lookupMedianMs: number;
  passSeconds: number;
  delivered: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  heapBeforeMiB: number;
  heapAfterMiB: number;
  anonBeforeMiB: number;
  anonAfterMiB: number;
}

async function measure(n: number): Promise<Row> {
  const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-scale-'));
  try {
    await mkdir(join(dir, 'spool'));
    const owned = await ownStore(dir); // this process owns the queue; the pool's workers share its lock
    const { store } = owned;
    const now = Date.now();
    const { firstRate, lastRate } = await fillQueue(store, n, now, dueFraction, BODY);
    const samples: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      store.dueIds(now, 100);
      samples.push(performance.now() - t0);
    }
    const pool = new WorkerPool(
      { receiverPath: RECEIVER, queueDir: dir, domains: ['localhost'], hostname: 'bench', lockFd: owned.lock.fd }, { size: 2 },
    );
    await pool.ready();
    const heapBefore = heapMiB();
    const rssBefore = rssMiB();
    const anonBefore = anonMiB();
    const runner = new QueueRunner(store, pool, { concurrency: 16 });
    const t0 = performance.now();
    const summary = await runner.runOnce();
    const passSeconds = (performance.now() - t0) / 1000;
    const rssAfter = rssMiB();
    const anonAfter = anonMiB();
    const heapAfter = heapMiB();
    await pool.close();
    await owned.close();
    return {
      queued: n, due: summary.attempted, fillRateFirst: firstRate, fillRateLast: lastRate,
      lookupMedianMs: Number(median(samples).toFixed(4)), passSeconds: Number(passSeconds.toFixed(2)),
      delivered: summary.delivered, rssBeforeMiB: rssBefore, rssAfterMiB: rssAfter,
      heapBeforeMiB: heapBefore, heapAfterMiB: heapAfter, anonBeforeMiB: anonBefore, anonAfterMiB: anonAfter,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const rows: Row[] = [];
for (const n of sizes) {
  const row = await measure(n);
  rows.push(row);
  console.log(JSON.stringify(row));
}
console.log('\n| queued | due | enqueue/s first 10% | last 10% | due look-up (median) | runner pass | delivered | main heap before → after | anon RSS before → after | RSS before → after |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.queued.toLocaleString('en')} | ${r.due} | ${r.fillRateFirst.toLocaleString('en')} | ${r.fillRateLast.toLocaleString('en')} | ${r.lookupMedianMs} ms | ${r.passSeconds} s | ${r.delivered} | ${r.heapBeforeMiB} → ${r.heapAfterMiB} MiB | ${r.anonBeforeMiB} → ${r.anonAfterMiB} MiB | ${r.rssBeforeMiB} → ${r.rssAfterMiB} MiB |`);
}
await mkdir(new URL('./results/', import.meta.url), { recursive: true });
const out = new URL(`./results/queue-scale-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
await writeFile(out, JSON.stringify({ cores: availableParallelism(), node: process.version, sizes, dueFraction, rows }, null, 2));
console.log(`\nwritten ${out.pathname}`);
