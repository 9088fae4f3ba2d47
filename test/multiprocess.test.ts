/**
 * The queue is one LMDB environment that several processes open at once: the
 * daemon writes and deletes while showqueue, flush and cron jobs open, read,
 * write and close it. Nothing the daemon committed may vanish. (lmdb-js's
 * default overlappingSync lost whole committed batches this way — 80 and 144 records
 * in two 30-s runs of this churn; the store turns it off.)
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { QueueStore } from '../src/core/store.ts';

const CHURN = fileURLToPath(new URL('fixtures/store-churn.ts', import.meta.url));
const SECONDS = Number(process.env.CHURN_SECONDS ?? 30);

function run(role: string, dir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHURN, role, dir, String(SECONDS)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), (SECONDS + 60) * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out.trim());
      else reject(new Error(`${role} ended with ${signal ?? code}: ${err.slice(-2000)}`));
    });
  });
}

describe('several processes on one queue', () => {
  let dir: string;
  after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

  it(`a writer's committed messages survive other processes opening, writing and closing the queue (${SECONDS} s)`, async () => {
    dir = await mkdtemp(join(tmpdir(), 'smtp-receive-multiprocess-'));
    await (await QueueStore.open(dir)).close(); // created before both start
    const [writer, other] = await Promise.all([run('writer', dir), run('other', dir)]);
    const result = JSON.parse(writer) as { done: number; missing: number; ids: string[] };
    assert.ok(result.done > 1000, `the writer did work: ${writer}`);
    assert.ok(Number(other) > 50, `the other process opened the queue again and again: ${other}`);
    assert.equal(result.missing, 0, `committed messages vanished: ${writer}`);
  });
});
