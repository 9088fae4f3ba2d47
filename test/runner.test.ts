/** The queue runner with an injectable clock: retries, backoff, fields that persist, recipients, expiry, worker failures. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { QueueRecord, QueueStore } from '../src/core/store.ts';
import type { DeliverItem } from '../src/core/tasks.ts';
import { WorkerPool } from '../src/main/pool.ts';
import { QueueRunner, type RunnerOptions } from '../src/main/runner.ts';
import { enqueueTest } from './helpers/enqueue.ts';
import { ownQueue } from './helpers/owned.ts';
import { until } from './helpers/queue.ts';

const FLAKY = new URL('./fixtures/flaky-deliver.ts', import.meta.url).pathname;
const PARTIAL = new URL('./fixtures/partial-deliver.ts', import.meta.url).pathname;

interface Rig {
  dir: string;
  store: QueueStore;
  pool: WorkerPool;
  clock: { now: number };
  runner: QueueRunner;
  log: () => Promise<string[]>;
  close: () => Promise<void>;
}

async function rig(receiverPath: string, o: RunnerOptions = {}): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-runner-'));
  const logFile = join(dir, 'deliveries.log');
  process.env.DELIVER_LOG = logFile; // read by the fixtures in the worker threads created below
  // this process owns the queue; the pool's worker threads share its lock
  const owned = await ownQueue(dir);
  const { store } = owned;
  const pool = new WorkerPool({ receiverPath, queueDir: dir, domains: ['localhost'], hostname: 'test', lockFd: owned.lock.fd }, { size: 1 });
  // the worker loads the receiver first (seconds on a loaded machine): not within a task's time limit
  await pool.ready();
  const clock = { now: 1_000_000 };
  const runner = new QueueRunner(store, pool, {
    now: () => clock.now, random: () => 0.5, // 0.5: no jitter
    retry: { minDelay: 1000, maxDelay: 8000, maxLifetime: 60_000 }, deliverTimeout: 2000, ...o,
  });
  return {
    dir, store, pool, clock, runner,
    log: async () => (existsSync(logFile) ? (await readFile(logFile, 'utf8')).trim().split('\n') : []),
    close: async () => {
      await pool.close();
      await owned.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('queue runner: retries and backoff', () => {
  let r: Rig;
  before(async () => { r = await rig(FLAKY); });
  after(async () => { await r.close(); });

  it('fails twice then delivers: three attempts, backoff respected, fields persist, record and file gone', async () => {
    const rec = await enqueueTest(r.store, { to: ['flaky@localhost'], time: r.clock.now, spooled: true });
    const id = rec.msg.id;
    assert.ok(existsSync(rec.msg.textFile));

    let s = await r.runner.runOnce();
    assert.equal(s.attempted, 1);
    assert.equal(s.deferred, 1);
    let q = r.store.get(id)!;
    assert.equal(q.attempts, 1);
    assert.equal(q.msg.tries, 1, 'the field deliver set persists');
    assert.equal(q.msg.error, 'temporary failure 1');
    assert.equal(q.msg.lastRun, r.clock.now);
    assert.equal(q.nextAttempt, r.clock.now + 1000, 'first retry after minDelay');
    assert.equal(q.lease, undefined);

    assert.equal((await r.runner.runOnce()).attempted, 0, 'not due yet: nothing attempted');
    r.clock.now += 999;
    assert.equal((await r.runner.runOnce()).attempted, 0, 'still 1 ms early');
    r.clock.now += 1;
    s = await r.runner.runOnce();
    assert.equal(s.attempted, 1);
    q = r.store.get(id)!;
    assert.equal(q.msg.tries, 2, 'deliver saw the field from the previous attempt');
    assert.equal(q.nextAttempt, r.clock.now + 2000, 'second retry delay doubles');

    r.clock.now += 1999;
    assert.equal((await r.runner.runOnce()).attempted, 0);
    r.clock.now += 1;
    s = await r.runner.runOnce();
    assert.equal(s.delivered, 1);
    assert.equal(r.store.get(id), undefined, 'record removed');
    assert.equal(existsSync(rec.msg.textFile), false, 'spool file removed');
    assert.equal((await r.log()).filter((l) => l.startsWith(id)).length, 3, 'exactly three attempts');
  });

  it('message.textFile of an inline body is written out on first use, and removed with the message', async () => {
    const rec = await enqueueTest(r.store, { to: ['textfile@localhost'], time: r.clock.now, body: 'Subject: tf\r\n\r\ninline body\r\n' });
    assert.equal(existsSync(rec.msg.textFile), false, 'no file while only LMDB holds the body');
    assert.equal((await r.runner.runOnce([rec.msg.id])).delivered, 1, 'deliver read the same bytes from message.textFile');
    assert.equal(existsSync(rec.msg.textFile), false, 'the written-out file went with the message');
  });

  it('persists a change to message.to made by deliver', async () => {
    const rec = await enqueueTest(r.store, { to: ['rewrite@localhost', 'other@localhost'], time: r.clock.now });
    await r.runner.runOnce();
    assert.deepEqual(r.store.get(rec.msg.id)!.msg.to, ['rewritten@localhost']);
    r.clock.now += 1000;
    await r.runner.runOnce();
    assert.equal(r.store.get(rec.msg.id), undefined);
    const calls = (await r.log()).filter((l) => l.startsWith(rec.msg.id));
    assert.deepEqual(calls, [`${rec.msg.id} rewrite@localhost,other@localhost`, `${rec.msg.id} rewritten@localhost`]);
  });

  it('moves a message past the queue lifetime to hold and runs expired()', async () => {
    const rec = await enqueueTest(r.store, { to: ['never@localhost'], time: r.clock.now });
    for (let i = 0; i < 20 && r.store.get(rec.msg.id)?.state === 'queued'; i++) {
      await r.runner.runOnce();
      r.clock.now += 8000;
    }
    const q = r.store.get(rec.msg.id)!;
    assert.equal(q.state, 'hold');
    assert.equal(q.msg.error, 'remote said no');
    assert.ok(r.clock.now - q.msg.time >= 60_000);
    assert.ok((await r.log()).includes(`EXPIRED ${rec.msg.id} after ${q.attempts} attempts`), "expired() sees the attempt count");
    r.clock.now += 1e9;
    assert.equal((await r.runner.runOnce()).attempted, 0, 'a held message is never attempted');
    assert.ok(r.store.get(rec.msg.id), 'and never dropped');
  });
});

describe('queue runner: per-recipient state', () => {
  let r: Rig;
  before(async () => { r = await rig(PARTIAL); });
  after(async () => { await r.close(); });

  it('does not redeliver to recipients isDelivered reports done', async () => {
    const rec = await enqueueTest(r.store, { to: ['a@localhost', 'b@localhost', 'c@localhost'], time: r.clock.now });
    for (let i = 0; i < 5 && r.store.get(rec.msg.id); i++) {
      await r.runner.runOnce();
      r.clock.now += 10_000;
    }
    assert.equal(r.store.get(rec.msg.id), undefined, 'fully delivered in the end');
    assert.deepEqual(await r.log(), [
      `${rec.msg.id} a@localhost,b@localhost,c@localhost`,
      `${rec.msg.id} b@localhost,c@localhost`,
      `${rec.msg.id} c@localhost`,
    ]);
  });
});

describe('queue runner: a worker that fails', () => {
  let r: Rig;
  before(async () => { r = await rig(FLAKY, { deliverTimeout: 2000 }); }); // room for a replacement worker to boot under load
  after(async () => { await r.close(); });

  for (const kind of ['hang', 'exit', 'timerbomb']) {
    it(`${kind}: the message stays queued with error set, and the pool keeps delivering`, async () => {
      const bad = await enqueueTest(r.store, { to: [`${kind}@localhost`], time: r.clock.now });
      const s = await r.runner.runOnce();
      assert.equal(s.deferred, 1);
      const q = r.store.get(bad.msg.id)!;
      assert.equal(q.state, 'queued');
      assert.equal(q.attempts, 1);
      assert.ok(q.msg.error && q.msg.error.length > 0, `error recorded: ${q.msg.error}`);
      const good = await enqueueTest(r.store, { to: ['ok@localhost'], time: r.clock.now });
      assert.equal((await r.runner.runOnce([good.msg.id])).delivered, 1);
      assert.equal(r.store.get(good.msg.id), undefined);
      await r.store.remove(bad.msg.id);
    });
  }
});

describe('queue runner: attempts go to the pool in batches', () => {
  let r: Rig;
  // one worker: the messages of a pass go out as one task
  before(async () => { r = await rig(FLAKY, { deliverTimeout: 2000 }); });
  after(async () => { await r.close(); });

  // the five go out as one task (see the next test), so the worker the pool ends at the time limit ran them all
  it('one message of a batch hangs: the others keep their outcomes, the hung one gets the time limit', async () => {
    const ok = await Promise.all([0, 1, 2].map(() => enqueueTest(r.store, { to: ['ok@localhost'], time: r.clock.now })));
    const never = await enqueueTest(r.store, { to: ['never@localhost'], time: r.clock.now });
    const hang = await enqueueTest(r.store, { to: ['hang@localhost'], time: r.clock.now });
    const s = await r.runner.runOnce();
    assert.equal(s.attempted, 5);
    assert.equal(s.delivered, 3, 'the quick ones were delivered although their worker was ended');
    assert.equal(s.deferred, 2);
    for (const m of ok) assert.equal(r.store.get(m.msg.id), undefined, 'delivered and removed');
    assert.equal(r.store.get(never.msg.id)!.msg.error, 'remote said no', 'its own outcome, not the time limit');
    assert.match(r.store.get(hang.msg.id)!.msg.error ?? '', /time limit/);
    const lines = await r.log();
    for (const m of [...ok, never, hang]) assert.equal(lines.filter((l) => l.startsWith(`${m.msg.id} `)).length, 1, 'each attempted once');
    await r.store.remove(never.msg.id);
    await r.store.remove(hang.msg.id);
  });

  it('the messages of a pass share tasks: fewer tasks than messages', async () => {
    const ms = await Promise.all(Array.from({ length: 20 }, () => enqueueTest(r.store, { to: ['ok@localhost'], time: r.clock.now })));
    const tasksBefore = r.pool.stats().completed;
    const s = await r.runner.runOnce();
    assert.equal(s.delivered, 20);
    for (const m of ms) assert.equal(r.store.get(m.msg.id), undefined);
    const tasks = r.pool.stats().completed - tasksBefore;
    assert.ok(tasks >= 2 && tasks <= 4, `20 messages in ${tasks} tasks (at most 16 a task)`);
  });
});

/** A queued message as one attempt of a delivery task, for tasks sent to the pool directly. */
const item = (rec: QueueRecord): DeliverItem => ({ message: rec.msg, storage: rec.storage, head: rec.head, delivered: [], attempts: 0 });

/** A rig whose worker sees DELIVER_GATE (a worker thread copies process.env when it starts): the gate@ files. */
async function gatedRig(): Promise<Rig & { gate: string }> {
  const gate = join(await mkdtemp(join(tmpdir(), 'smtp-receive-gate-')), 'gate');
  process.env.DELIVER_GATE = gate;
  // a time limit far away: the worker's report just before it plays no part here
  const r = await rig(FLAKY, { deliverTimeout: 120_000 });
  const close = async (): Promise<void> => {
    delete process.env.DELIVER_GATE;
    await r.close();
    await rm(dirname(gate), { recursive: true, force: true });
  };
  return { ...r, gate, close };
}

describe('queue runner: a slow attempt does not hold its batch-mates', () => {
  let r: Rig & { gate: string };
  before(async () => { r = await gatedRig(); });
  after(async () => { await r?.close(); });

  it('the quick ones of a task are delivered and removed while the slow one still runs', async () => {
    const ok = await Promise.all([0, 1, 2].map(() => enqueueTest(r.store, { to: ['ok@localhost'], time: r.clock.now })));
    const slow = await enqueueTest(r.store, { to: ['gate@localhost'], time: r.clock.now });
    const tasksBefore = r.pool.stats().completed;
    const pass = r.runner.runOnce();
    await until(() => ok.every((m) => !r.store.has(m.msg.id)), 'the quick ones to be removed while gate@ waits', 30_000);
    assert.ok(r.store.get(slow.msg.id)?.lease, 'gate@ is still being attempted');
    await writeFile(r.gate, '');
    const s = await pass;
    assert.equal(s.delivered, 4);
    assert.equal(r.pool.stats().completed - tasksBefore, 1, 'all four went out in one task');
    assert.equal(r.store.has(slow.msg.id), false);
    const lines = await r.log();
    for (const m of [...ok, slow]) assert.equal(lines.filter((l) => l.startsWith(`${m.msg.id} `)).length, 1, 'each attempted once');
  });
});

describe('worker pool: a check a client waits for goes ahead of the deliveries waiting', () => {
  let r: Rig & { gate: string };
  before(async () => { r = await gatedRig(); });
  after(async () => { await r?.close(); });

  it('one worker busy with a delivery, another delivery waiting: a ping (like predeliver) runs before it', async () => {
    const first = await enqueueTest(r.store, { to: ['gate@localhost'], time: r.clock.now });
    const second = await enqueueTest(r.store, { to: ['gate2@localhost'], time: r.clock.now });
    const d1 = r.pool.run({ kind: 'deliver', items: [item(first)], batch: 'b1', reportAt: 0 }, 120_000);
    const d2 = r.pool.run({ kind: 'deliver', items: [item(second)], batch: 'b2', reportAt: 0 }, 120_000);
    await until(async () => (await r.log()).some((l) => l.startsWith(first.msg.id)), 'the first delivery to start', 30_000);
    const ping = r.pool.run({ kind: 'ping' }, 120_000);
    assert.equal(r.pool.queueSize, 2, 'the second delivery and the ping wait');
    await writeFile(r.gate, ''); // the first ends; its worker takes the ping, not the second delivery (which would wait for gate.2)
    let timer: NodeJS.Timeout | undefined;
    const first_ = await Promise.race([ping.then(() => 'ping'), new Promise((res) => { timer = setTimeout(() => res('the second delivery'), 30_000); })]);
    clearTimeout(timer);
    assert.equal(first_, 'ping');
    await writeFile(`${r.gate}.2`, '');
    assert.ok((await d1).ok);
    assert.ok((await d2).ok);
  });

  it('closing the pool ends the tasks still waiting for a worker (they would wait for ever)', async () => {
    const g = await gatedRig(); // a pool of its own, to close here
    try {
      const busy = await enqueueTest(g.store, { to: ['gate@localhost'], time: g.clock.now });
      const next = await enqueueTest(g.store, { to: ['ok@localhost'], time: g.clock.now });
      const running = g.pool.run({ kind: 'deliver', items: [item(busy)], batch: 'c1', reportAt: 0 }, 120_000);
      const waiting = g.pool.run({ kind: 'deliver', items: [item(next)], batch: 'c2', reportAt: 0 }, 120_000);
      await until(async () => (await g.log()).some((l) => l.startsWith(busy.msg.id)), 'the first delivery to start', 30_000);
      await g.pool.close();
      const w = await waiting;
      assert.equal(w.ok, false);
      assert.match(!w.ok ? w.error : '', /closed before a worker took it/);
      assert.equal((await running).ok, false, 'the running one is cut short');
    } finally {
      await g.close().catch(() => {});
    }
  });
});
