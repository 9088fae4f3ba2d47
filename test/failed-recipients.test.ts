/**
 * Recipients failed for good (failRecipient in deliver): they count as done,
 * leave message.undelivered, get the failed() hook once, persist with the
 * record, and a message whose recipients all failed is finished, never
 * retried forever — the runner and the worker's deliver protocol.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { failRecipient } from '../src/core/failures.ts';
import type { QueueStore } from '../src/core/store.ts';
import { WorkerPool } from '../src/main/pool.ts';
import { QueueRunner } from '../src/main/runner.ts';
import { enqueueTest } from './helpers/enqueue.ts';
import { ownQueue, type OwnedQueue } from './helpers/owned.ts';

const FIXTURE = new URL('./fixtures/fail-recipients.ts', import.meta.url).pathname;

describe('recipients failed for good', () => {
  let dir: string;
  let logFile: string;
  let owned: OwnedQueue;
  let store: QueueStore;
  let pool: WorkerPool;
  let runner: QueueRunner;
  const clock = { now: 1_000_000 };
  const lines = async (id: string): Promise<string[]> =>
    (existsSync(logFile) ? (await readFile(logFile, 'utf8')).trim().split('\n') : []).filter((l) => l.startsWith(id)).map((l) => l.slice(id.length + 1));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'smtp-receive-failed-'));
    logFile = join(dir, 'deliveries.log');
    process.env.DELIVER_LOG = logFile; // read by the fixture in the worker created below
    owned = await ownQueue(dir);
    store = owned.store;
    pool = new WorkerPool({ receiverPath: FIXTURE, queueDir: dir, domains: ['localhost'], hostname: 'test', lockFd: owned.lock.fd }, { size: 1 });
    runner = new QueueRunner(store, pool, {
      now: () => clock.now, random: () => 0.5, retry: { minDelay: 1000, maxDelay: 8000, maxLifetime: 600_000 }, deliverTimeout: 5000,
    });
  });
  after(async () => {
    await pool.close();
    await owned.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('one delivered and one failed: the message is finished in one attempt; the hook ran for the failed one', async () => {
    const { msg } = await enqueueTest(store, { to: ['ok@localhost', 'bad@localhost'], time: clock.now });
    const s = await runner.runOnce([msg.id]);
    assert.equal(s.delivered, 1);
    assert.equal(store.get(msg.id), undefined);
    assert.deepEqual(await lines(msg.id), ['deliver ok@localhost,bad@localhost', 'failed bad@localhost 550']);
  });

  it('a failed recipient is recorded and left out of later attempts; the hook runs once', async () => {
    const { msg } = await enqueueTest(store, { to: ['bad1@localhost', 'soft@localhost', 'ok1@localhost'], time: clock.now });
    assert.equal((await runner.runOnce([msg.id])).deferred, 1);
    const r = store.get(msg.id)!;
    assert.deepEqual(r.msg.failed?.map((f) => [f.recipient, f.reply]), [['bad1@localhost', { code: 550, enhanced: '5.1.1', text: 'No such user' }]]);
    assert.equal(r.msg.error, '451 4.2.0 try later');
    clock.now += 1000;
    assert.equal((await runner.runOnce()).delivered, 1);
    assert.equal(store.get(msg.id), undefined);
    assert.deepEqual(await lines(msg.id), [
      'deliver bad1@localhost,soft@localhost,ok1@localhost',
      'failed bad1@localhost 550',
      'deliver soft@localhost,ok1@localhost',
    ]);
  });

  it('every recipient failed: finished even though deliver threw (not retried forever)', async () => {
    const { msg } = await enqueueTest(store, { to: ['throw1@localhost', 'throw2@localhost'], time: clock.now });
    assert.equal((await runner.runOnce([msg.id])).delivered, 1);
    assert.equal(store.get(msg.id), undefined);
    assert.deepEqual(await lines(msg.id), ['deliver throw1@localhost,throw2@localhost', 'failed throw1@localhost 550', 'failed throw2@localhost 550']);
  });

  it('failRecipient takes a 5xx only, and keeps the first reply', () => {
    const m = { failed: undefined } as unknown as Parameters<typeof failRecipient>[0];
    assert.throws(() => failRecipient(m, 'a@x', '451 4.2.0 later'), /needs a 5xx reply, got 451/);
    failRecipient(m, 'a@x', '550 no such user');
    failRecipient(m, 'a@x', '554 5.7.1 other');
    assert.deepEqual(m.failed!.map((f) => [f.recipient, f.reply]),
      [['a@x', { code: 550, enhanced: '5.7.1', text: 'no such user' }]]);
  });
});
