/**
 * The queue operations (flush, delete, hold, release, requeue) as commands against
 * a queue that a running `serve` child process owns — its receiver always fails,
 * so every message stays queued after each attempt — while SMTP sessions go on
 * (the test reads the queue through the daemon's control socket, as the commands
 * do); then as functions on a queue holding a leased message.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as api from '../src/index.ts';
import { deleteMessages, flush, hold, release, requeue, type OpResult } from '../src/core/queue-ops.ts';
import type { QueueRecord, QueueStore } from '../src/core/store.ts';
import { runCli, spawnCli, type CliProcess } from './helpers/cli.ts';
import { enqueueTest } from './helpers/enqueue.ts';
import { ownQueue, type OwnedQueue } from './helpers/owned.ts';
import { daemonRecord, daemonRecords, storedMessage, until } from './helpers/queue.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

const FIXTURE = new URL('./fixtures/always-defer.ts', import.meta.url).pathname;
const FLAKY = new URL('./fixtures/flaky-deliver.ts', import.meta.url).pathname;
/** The daemon looks for due messages after each attempt, when a command makes some due, and every 5 s: room for two polls. */
const PICKUP_MS = 15_000;

let tmp: string;
before(async () => { tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-queue-ops-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

describe('queue operations while serve runs', () => {
  let dir: string;
  let daemon: CliProcess;
  let port: number;
  const accepted: string[] = [];
  const deleted = new Set<string>();
  let A: string; // hold, release
  let B: string; // flush, requeue
  let C: string; // spooled; delete

  /** A record as the daemon has it now (through its control socket). */
  const get = (id: string): Promise<QueueRecord | undefined> => daemonRecord(dir, id);
  const live = (): string[] => accepted.filter((id) => !deleted.has(id));
  const leased = (r: QueueRecord): boolean => !!r.lease && r.lease.until > Date.now();
  /** Waits until no message is being delivered and each has been attempted at least `min(id)` times. */
  const settled = (min: (id: string) => number = () => 1): Promise<void> => until(async () => {
    const records = await daemonRecords(dir);
    return live().every((id) => {
      const r = records.get(id);
      return !!r && !leased(r) && r.attempts >= min(id);
    });
  }, 'every message attempted and none being delivered', PICKUP_MS);
  const attemptsNow = async (): Promise<Map<string, number>> => {
    const records = await daemonRecords(dir);
    return new Map(live().map((id) => [id, records.get(id)!.attempts]));
  };

  /** One SMTP transaction; it must get its 250 whatever the operations are doing. */
  async function send(body = 'Subject: ops\r\n\r\nhello\r\n'): Promise<string> {
    const c = await RawClient.ready(port);
    try {
      const id = queuedId(await c.send('sender@example.org', ['rcpt@localhost'], body));
      accepted.push(id);
      return id;
    } finally {
      await c.quit();
    }
  }

  const op = (...args: string[]): ReturnType<typeof runCli> => runCli([...args, '--queue', dir]);
  async function showqueueRows(): Promise<string[]> {
    const r = await runCli(['showqueue', '--queue', dir]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => /^[0-9A-Z]{17}[ *!] /.test(l));
  }
  const row = (rows: string[], id: string): string | undefined => rows.find((l) => l.startsWith(id));

  before(async () => {
    dir = join(tmp, 'queue');
    daemon = spawnCli(['serve', '--listen', '127.0.0.1:0', '--queue', dir, '--no-reverse-dns', '--receiver', FIXTURE,
      '--workers', '1', '--inline-max', '2048', '--hostname', 'test.invalid']);
    port = (await daemon.ready()).port;
    A = await send();
    B = await send();
    C = await send(`Subject: big\r\n\r\n${'0123456789abcdefghijklmnopqrstuvwxyz\r\n'.repeat(100)}`);
    await send();
    await settled();
    assert.equal((await get(C))!.storage, 'file');
    assert.ok(existsSync((await get(C))!.msg.textFile));
  });
  after(async () => {
    await daemon?.kill();
  });

  it('hold ID: shown with !, state hold', async () => {
    const r = await op('hold', A);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Placed on hold: 1 message\n/);
    assert.equal((await get(A))!.state, 'hold');
    assert.match(row(await showqueueRows(), A)!, new RegExp(`^${A}! `));
    await send();
    await settled();
  });

  it('flush: a deferred message is attempted again soon; the held one is not attempted', async () => {
    const prior = await attemptsNow();
    const heldBefore = (await get(A))!;
    assert.ok((await get(B))!.nextAttempt > Date.now() + 60_000, 'B is deferred minutes away');
    const r = await op('flush');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Made due: \d+ messages?\n/);
    await send(); // (the daemon looks for due messages after each attempt, else every 5 s)
    // every queued message gets another attempt: the daemon has seen the flush
    await settled((id) => (id === A ? 0 : (prior.get(id) ?? 0) + 1));
    const held = (await get(A))!;
    assert.equal(held.state, 'hold');
    assert.equal(held.attempts, heldBefore.attempts, 'a held message is never attempted');
    assert.equal(held.msg.lastRun, heldBefore.msg.lastRun);
    assert.ok((await get(B))!.msg.error?.includes('remote said no'), 'the attempt ran the receiver');
  });

  it('release ID: due at once and attempted again by the daemon', async () => {
    const attempts = (await get(A))!.attempts;
    const r = await op('release', A);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Released from hold: 1 message\n/);
    assert.notEqual((await get(A))!.state, 'hold');
    await send();
    await settled((id) => (id === A ? attempts + 1 : 1));
    assert.equal((await get(A))!.state, 'queued');
    assert.match(row(await showqueueRows(), A)!, new RegExp(`^${A}  `));
  });

  it('requeue ID: the attempt count starts again, then the daemon attempts it', async () => {
    const b = (await get(B))!;
    assert.ok(b.attempts >= 2, `B was attempted ${b.attempts} times`);
    const r = await op('requeue', B);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Requeued: 1 message\n/);
    await send();
    await until(async () => {
      const now = (await get(B))!;
      return now.msg.lastRun !== b.msg.lastRun && !leased(now);
    }, 'B attempted after the requeue', PICKUP_MS);
    const requeued = (await get(B))!;
    assert.equal(requeued.attempts, 1, 'attempts counted from 0 again');
    assert.ok(requeued.lifetimeFrom !== undefined && requeued.lifetimeFrom > b.msg.time, 'a fresh queue lifetime');
    await settled();
  });

  it('delete ID: gone from the queue and showqueue, its spool file removed', async () => {
    const file = (await get(C))!.msg.textFile;
    const r = await op('delete', C);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Deleted: 1 message\n/);
    deleted.add(C);
    assert.equal(await get(C), undefined);
    assert.ok(!existsSync(file), 'spool file removed');
    const rows = await showqueueRows();
    assert.equal(row(rows, C), undefined);
    assert.equal(rows.length, live().length);
  });

  it('delete of an unknown id exits 1 naming it; a malformed id exits 2', async () => {
    const unknown = 'ZZZZZZZZZ0000AAAA';
    const r = await op('delete', unknown);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${unknown}: no such message`));
    assert.match(r.stdout, /Deleted: 0 messages\n/);
    const bad = await op('delete', 'not-an-id');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /"not-an-id" is not a queue id/);
    const none = await op('delete');
    assert.equal(none.code, 2);
    assert.equal((await daemonRecords(dir)).size, live().length, 'nothing was deleted');
  });

  it('hold ALL / release ALL', async () => {
    await settled();
    const n = live().length;
    const h = await op('hold', 'ALL');
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, new RegExp(`Placed on hold: ${n} messages\n`));
    const heldAll = await daemonRecords(dir);
    for (const id of live()) assert.equal(heldAll.get(id)!.state, 'hold', id);
    const rows = await showqueueRows();
    assert.equal(rows.length, n);
    for (const l of rows) assert.match(l, /^[0-9A-Z]{17}! /);

    const prior = await attemptsNow();
    const r = await op('release', 'ALL');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Released from hold: ${n} messages\n`));
    await send();
    await settled((id) => (prior.get(id) ?? 0) + 1);
    const released = await daemonRecords(dir);
    for (const id of live()) assert.equal(released.get(id)!.state, 'queued', id);
  });

  it('after it all: the daemon stops cleanly and the queue has every accepted message not deleted', async () => {
    await send();
    await settled();
    const exit = await daemon.signal('SIGTERM');
    assert.equal(exit.code, 0, daemon.stderr);
    // the daemon is gone: the queue is ours to open
    const { store, close } = await ownQueue(dir);
    try {
      assert.deepEqual([...store.ids()], live(), 'exactly the accepted messages that were not deleted');
      for (const id of live()) {
        const s = (await storedMessage(store, id))!;
        assert.equal(s.bytes.length, s.record.msg.size, `${id}: body intact`);
      }
    } finally {
      await close();
    }
    assert.equal(accepted.length, 10);
    assert.equal(deleted.size, 1);
  });
});

describe('queue operations as functions: a leased message is busy and left alone', () => {
  let owned: OwnedQueue;
  let store: QueueStore;
  let leasedRec: QueueRecord;
  let free: QueueRecord;
  let expired: QueueRecord;
  const NOW = Date.UTC(2025, 0, 1);

  before(async () => {
    owned = await ownQueue(join(tmp, 'unit'));
    store = owned.store;
    const lease = async (r: QueueRecord, until: number): Promise<QueueRecord> =>
      (await store.update(r.msg.id, (x) => ({ ...x, nextAttempt: NOW + 600_000, attempts: 2, lease: { owner: 'other', until } })))!;
    leasedRec = await lease(await enqueueTest(store, { to: ['a@localhost'], time: NOW - 1000, spooled: true }), NOW + 60_000);
    expired = await lease(await enqueueTest(store, { to: ['b@localhost'], time: NOW - 1000 }), NOW - 1);
    free = await enqueueTest(store, { to: ['c@localhost'], time: NOW + 600_000 });
  });
  after(async () => { await owned?.close(); });

  const id = (r: QueueRecord): string => r.msg.id;
  const ops: Array<[string, (ids: string[]) => Promise<OpResult>]> = [
    ['hold', (ids) => hold(store, ids, NOW)],
    ['release', (ids) => release(store, ids, NOW)],
    ['requeue', (ids) => requeue(store, ids, NOW)],
    ['deleteMessages', (ids) => deleteMessages(store, ids, NOW)],
  ];
  for (const [name, run] of ops) {
    it(`${name}: the leased message is reported busy and unchanged`, async () => {
      const r = await run([id(leasedRec), 'ZZZZZZZZZ0000AAAA']);
      assert.deepEqual(r.busy, [id(leasedRec)]);
      assert.deepEqual(r.missing, ['ZZZZZZZZZ0000AAAA']);
      assert.deepEqual(r.changed, []);
      assert.deepEqual(store.get(id(leasedRec)), leasedRec);
      assert.ok(existsSync(leasedRec.msg.textFile), 'its spool file is still there');
    });
  }

  it('a delivered message whose removal waits for a commit (updateLater) is missing, not busy', async () => {
    const gone = await store.update((await enqueueTest(store, { to: ['d@localhost'], time: NOW - 1000 })).msg.id,
      (x) => ({ ...x, lease: { owner: 'runner', until: NOW + 60_000 } }));
    // the runner's removal of a delivered message: it joins the next commit, or commits within 20 ms
    const removed = store.updateLater(id(gone!), (r) => (r.lease?.owner === 'runner' ? null : undefined));
    const r = await deleteMessages(store, [id(gone!)], NOW);
    assert.deepEqual(r.missing, [id(gone!)], 'written first, then looked for');
    assert.deepEqual(r.busy, []);
    assert.equal(await removed, null);
  });

  it('an expired lease is no claim: hold goes ahead and drops it; release makes the message due', async () => {
    assert.deepEqual((await hold(store, [id(expired)], NOW)).changed, [id(expired)]);
    const held = store.get(id(expired))!;
    assert.equal(held.state, 'hold');
    assert.equal(held.lease, undefined, 'the stale lease is dropped');
    assert.deepEqual((await hold(store, [id(expired)], NOW)).unchanged, [id(expired)]);
    assert.deepEqual((await release(store, [id(expired)], NOW)).changed, [id(expired)]);
    assert.equal(store.get(id(expired))!.state, 'queued');
    assert.equal(store.get(id(expired))!.nextAttempt, NOW);
    assert.deepEqual((await release(store, [id(free)], NOW)).unchanged, [id(free)], 'release of a queued message');
  });

  it('flush: the leased message is busy and unchanged; the others are made due', async () => {
    const r = await flush(store, NOW);
    assert.deepEqual(r.busy, [id(leasedRec)]);
    assert.deepEqual(r.changed, [id(free)]);
    assert.deepEqual(r.unchanged, [id(expired)], 'already due');
    assert.deepEqual(store.get(id(leasedRec)), leasedRec);
    assert.equal(store.get(id(free))!.nextAttempt, NOW);
    assert.deepEqual(store.dueIds(NOW, 10).sort(), [id(expired), id(free)].sort(), 'the due index follows');
  });

  it('the flush and hold commands with a message being delivered: flush counts it and succeeds, hold fails on it', async () => {
    // a lease is only ever held by the queue's owner while it delivers (a new owner takes every
    // lease back), so "being delivered" needs a real delivery in progress: a daemon whose
    // deliver never returns for hang@; the commands reach it through its control socket
    const dir = join(tmp, 'busy-cli');
    const server = await api.startTestServer({
      queueDir: dir, receiverPath: FLAKY, deliverTimeout: 600_000, shutdownGrace: 0, inlineMax: 2048,
    });
    try {
      const c = await RawClient.ready(server.port);
      let id: string;
      try {
        id = queuedId(await c.send('sender@example.org', ['hang@localhost'], 'Subject: busy\r\n\r\nhello\r\n'));
      } finally {
        await c.quit();
      }
      await until(() => (server.store.get(id)?.lease?.until ?? 0) > Date.now(), 'the message being delivered');
      const flushed = await runCli(['flush', '--queue', dir]);
      assert.equal(flushed.code, 0, flushed.stderr);
      assert.equal(flushed.stdout, 'smtp-receive: Made due: 0 messages; 1 being delivered right now\n');
      assert.equal(flushed.stderr, '');
      const held = await runCli(['hold', id, '--queue', dir]);
      assert.equal(held.code, 1);
      assert.match(held.stderr, new RegExp(`${id}: being delivered right now, not changed; try again`));
      // the exported functions (by queue directory) say the same through the daemon
      assert.deepEqual(await api.hold(dir, [id]), { changed: [], missing: [], busy: [id], unchanged: [] });
      assert.deepEqual((await api.flush(dir)).busy, [id]);
      assert.equal(server.store.get(id)!.state, 'queued', 'still queued, not held');
    } finally {
      await server.stop();
    }
  });

  it('delete ALL: everything but the leased message goes', async () => {
    const r = await deleteMessages(store, 'ALL', NOW);
    assert.deepEqual(r.busy, [id(leasedRec)]);
    assert.deepEqual(new Set(r.changed), new Set([id(expired), id(free)]));
    assert.deepEqual([...store.ids()], [id(leasedRec)]);
    assert.deepEqual(store.get(id(leasedRec)), leasedRec);
    assert.ok(existsSync(leasedRec.msg.textFile), 'its spool file is still there');
  });
});

describe('an ALL operation and a message that goes meanwhile', () => {
  it('flush ALL over more than one batch: a message deleted between its batches is not reported missing', async () => {
    const { store, close } = await ownQueue(join(tmp, 'all-batches'));
    try {
      const later = Date.now() + 600_000;
      const recs: QueueRecord[] = [];
      for (let i = 0; i < 1005; i++) recs.push(await enqueueTest(store, { to: ['e@localhost'], time: later }));
      const last = recs.at(-1)!.msg.id;
      const flushing = flush(store); // lists every id now, then changes them 1,000 per transaction
      const deleting = deleteMessages(store, [last]); // its transaction runs between the two batches
      const [f, d] = await Promise.all([flushing, deleting]);
      assert.deepEqual(d.changed, [last]);
      assert.deepEqual(f.missing, [], 'gone meanwhile: not asked for by id');
      assert.equal(f.changed.length, 1004);
      assert.ok(!f.changed.includes(last));
      assert.equal(store.has(last), false);
    } finally {
      await close();
    }
  });
});
