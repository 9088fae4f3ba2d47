/**
 * Every queue command gives the same output and exit status whether it opens
 * the queue itself (no daemon) or goes through a running daemon's control
 * socket: one queue is copied, the same sequence of commands runs offline on
 * one copy and against `serve` on the other, and each step is compared.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli, spawnCli, type CliProcess } from './helpers/cli.ts';
import { enqueueTest } from './helpers/enqueue.ts';
import { ownQueue } from './helpers/owned.ts';

const FLAKY = new URL('./fixtures/flaky-deliver.ts', import.meta.url).pathname;
const T = Date.UTC(2026, 10, 26, 12, 0, 0);

let tmp: string;
let offlineQ: string;
let onlineQ: string;
let ids: string[];
let daemon: CliProcess;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-golden-'));
  offlineQ = join(tmp, 'offline');
  const q = await ownQueue(offlineQ);
  try {
    const specs = [
      { to: ['ok@localhost'], from: 'alice@example.org' },
      { to: ['never@localhost', 'ok2@localhost'], from: '' },
      { to: ['flaky@localhost'], from: 'bob@example.org', spooled: true },
      { to: ['ok3@localhost'], from: 'carol@example.org', spooled: true },
    ];
    ids = [];
    for (const [i, s] of specs.entries()) {
      ids.push((await enqueueTest(q.store, { ...s, time: T + i * 1000, body: `Subject: golden ${i}\r\n\r\n${'x'.repeat(100 * i)}\r\n` })).msg.id);
    }
    await q.store.recordReceiver(FLAKY); // as serve would: both sides then find the same receiver
  } finally {
    await q.close();
  }
  onlineQ = join(tmp, 'online');
  await cp(offlineQ, onlineQ, { recursive: true });
  const copy = await ownQueue(onlineQ); // records name their spool files by absolute path
  try {
    for (const id of ids) await copy.store.update(id, (r) => ({ ...r, msg: { ...r.msg, textFile: r.msg.textFile.replace(offlineQ, onlineQ) } }));
  } finally {
    await copy.close();
  }
  daemon = spawnCli(['serve', '--listen', '127.0.0.1:0', '--queue', onlineQ, '--no-reverse-dns', '--workers', '1',
    '--receiver', FLAKY, '--no-runner']);
  await daemon.ready();
});

after(async () => {
  await daemon.kill();
  await rm(tmp, { recursive: true, force: true });
});

/** Runs one command on both queues; the output must be the same but for the queue's path. */
async function both(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const off = await runCli([...args, '--queue', offlineQ], 60_000);
  const on = await runCli([...args, '--queue', onlineQ], 60_000);
  const norm = (s: string, q: string): string => s.split(q).join('QUEUE');
  assert.equal(daemon.hasExited, false, 'the daemon still runs: the command went through it');
  assert.deepEqual(
    { code: on.code, stdout: norm(on.stdout, onlineQ), stderr: norm(on.stderr, onlineQ) },
    { code: off.code, stdout: norm(off.stdout, offlineQ), stderr: norm(off.stderr, offlineQ) },
    `smtp-receive ${args.join(' ')}`,
  );
  return off;
}

describe('queue commands: the same through the daemon as offline', () => {
  it('showqueue: text, JSON, JSON with bodies, chosen ids and an unknown one', async () => {
    const text = await both('showqueue');
    assert.match(text.stdout, /-- 0 Kbytes in 4 Requests\.\n$/);
    assert.equal((await both('showqueue', '--json')).stdout.trim().split('\n').length, 4);
    const some = await both('showqueue', '--json', '--bodies', ids[3]!, '0000000000000ZZZZ', ids[1]!);
    assert.equal(some.code, 1);
    assert.deepEqual(some.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { queue_id: string }).queue_id), [ids[3], ids[1]]);
    assert.match(some.stderr, /0000000000000ZZZZ: no such message in QUEUE|no such message/);
  });

  it('hold, release, requeue, delete (with an unknown id), flush, hold ALL, release ALL', async () => {
    assert.match((await both('hold', ids[0]!)).stdout, /Placed on hold: 1 message\n/);
    assert.match((await both('showqueue')).stdout, new RegExp(`^${ids[0]}!`, 'm'));
    await both('release', ids[0]!);
    await both('requeue', ids[1]!);
    const del = await both('delete', ids[2]!, '0000000000000ZZZZ');
    assert.equal(del.code, 1);
    await both('flush');
    assert.match((await both('hold', 'ALL')).stdout, /Placed on hold: 3 messages/);
    await both('release', 'ALL');
    await both('hold', '../etc'); // a usage error: exit 2 either way
    assert.match((await both('showqueue')).stdout, /-- 0 Kbytes in 3 Requests\.\n$/);
  });

  it('runqueue: the same summary, and the same queue after it', async () => {
    const r = await both('runqueue', '--receiver', FLAKY);
    assert.equal(r.stdout, 'runqueue: 3 attempted, 2 delivered, 1 deferred, 0 held, 0 skipped\n');
    assert.match(r.stderr, new RegExp(`smtp-receive: ${ids[1]}: deferred: remote said no\n`));
    assert.equal(r.code, 1);
    const left = await both('showqueue');
    assert.match(left.stdout, /never@localhost/);
    assert.match(left.stdout, /-- 0 Kbytes in 1 Request\.\n$/);
    assert.equal((await both('runqueue', '--receiver', FLAKY, '0000000000000ZZZZ')).code, 1);
  });
});
