/**
 * Delivery throughput: a queue of N messages (bulk-filled, all due) drained by
 * `smtp-receive runqueue` with a trivial deliver(): messages/s of the whole
 * pass, including process start-up.
 *
 *   node --import tsx bench/delivery.ts [--size 100000] [--workers 2] [--built]
 *     [--receiver FILE] [--checkout DIR]
 *   (also: npm run bench -- delivery)
 *
 * --receiver: another receiver module (e.g. bench/fixtures/straggler-deliver.mjs,
 * with --built); --checkout: run another built checkout's CLI (with --built), to
 * compare two versions on the same queue size.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fillQueue, ownStore } from './fill-queue.ts';
import { BENCH, ROOT } from './targets.ts';

const { values: v } = parseArgs({
  options: {
    size: { type: 'string', default: '100000' }, workers: { type: 'string', default: '2' }, built: { type: 'boolean' },
    receiver: { type: 'string' }, checkout: { type: 'string' },
  },
});
const size = Number(v.size);
const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-delivery-'));
try {
  const queueDir = join(dir, 'queue');
  await mkdir(join(queueDir, 'spool'), { recursive: true });
  const filling = await ownStore(queueDir);
  await fillQueue(filling.store, size, Date.now(), 1, Buffer.alloc(4096, 'x'));
  await filling.close(); // runqueue takes the queue next
  const receiver = v.receiver ? resolve(v.receiver) : join(BENCH, 'fixtures', 'trivial-deliver.ts');
  if (v.checkout && !v.built) throw new Error('--checkout runs a built checkout: give --built too');
  const root = v.checkout ? resolve(v.checkout) : ROOT;
  const entry = v.built ? [join(root, 'bin', 'smtp-receive.js')] : ['--import', 'tsx', join(ROOT, 'src', 'main', 'cli.ts')];
  const t0 = performance.now();
  const child = spawn(process.execPath, [...entry, 'runqueue', '--queue', queueDir, '--receiver', receiver, '--workers', v.workers!], {
    cwd: root, stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const kill = setTimeout(() => child.kill('SIGKILL'), 1_800_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(kill);
  const seconds = (performance.now() - t0) / 1000;
  const delivered = Number(/(\d+) delivered/.exec(out)?.[1] ?? 0);
  const left = await (async () => {
    const s = await ownStore(queueDir); // runqueue has exited
    try { return s.store.count(); } finally { await s.close(); }
  })();
  console.log(out.trim());
  console.log(`| queued | workers | delivered | left | seconds | messages/s |\n|---:|---:|---:|---:|---:|---:|`);
  console.log(`| ${size.toLocaleString('en')} | ${v.workers} | ${delivered.toLocaleString('en')} | ${left} | ${seconds.toFixed(1)} | ${(delivered / seconds).toFixed(0)} |`);
  const file = join(BENCH, 'results', `delivery-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await mkdir(join(BENCH, 'results'), { recursive: true });
  await writeFile(file, JSON.stringify({ cores: availableParallelism(), node: process.version, size, workers: Number(v.workers), built: !!v.built, receiver, checkout: root, code, delivered, left, seconds }, null, 2));
  console.log(`\nwritten ${file}`);
  if (code !== 0 || left !== 0) process.exitCode = 1;
} finally {
  await rm(dir, { recursive: true, force: true });
}
