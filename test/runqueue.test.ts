/** `smtp-receive runqueue`: finding the receiver, one pass, given ids whether due or not, exit codes. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestServer } from '../src/testing.ts';
import { runCli } from './helpers/cli.ts';
import { ownQueue } from './helpers/owned.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

const FLAKY = new URL('./fixtures/flaky-deliver.ts', import.meta.url).pathname;

/** Queues messages through a server that does not deliver (runner off), then stops it. */
async function queueWith(receiverPath: string | undefined, queueDir: string, to: string[]): Promise<string[]> {
  const server = await startTestServer({ receiverPath, queueDir, runner: false });
  try {
    const c = await RawClient.ready(server.port);
    const ids: string[] = [];
    for (const rcpt of to) ids.push(queuedId(await c.send('s@example.org', [rcpt], 'Subject: q\r\n\r\nx\r\n')));
    await c.quit();
    return ids;
  } finally {
    await server.close();
  }
}

describe('runqueue', () => {
  let dir: string;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'smtp-receive-runqueue-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('uses the receiver serve recorded, says so, and delivers what is due', async () => {
    const queue = join(dir, 'recorded');
    const [okId, neverId] = await queueWith(FLAKY, queue, ['ok@localhost', 'never@localhost']);
    const r = await runCli(['runqueue', '--queue', queue], 60_000);
    assert.match(r.stderr, new RegExp(`using the receiver recorded by serve: ${FLAKY.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.match(r.stdout, /runqueue: 2 attempted, 1 delivered, 1 deferred, 0 held, 0 skipped/);
    assert.equal(r.code, 1, 'a deferred message makes the exit status 1');
    assert.match(r.stderr, new RegExp(`smtp-receive: ${neverId}: deferred: remote said no\n`), 'the reason of a deferral is said');
    const { store, close } = await ownQueue(queue); // no daemon: runqueue has exited; closed before the next command
    try {
      assert.equal(store.has(okId!), false);
      const deferred = store.get(neverId!)!;
      assert.equal(deferred.attempts, 1);
      assert.equal(deferred.msg.error, 'remote said no');
    } finally {
      await close();
    }

    const again = await runCli(['runqueue', '--queue', queue], 60_000);
    assert.match(again.stdout, /runqueue: 0 attempted/, 'nothing is due yet: the retry is minutes away');
    const forced = await runCli(['runqueue', '--queue', queue, neverId!], 60_000);
    assert.match(forced.stdout, /runqueue: 1 attempted, 0 delivered, 1 deferred/, 'a given id is attempted whether due or not');
  });

  it('with the built-in receiver there is nothing to deliver with', async () => {
    const queue = join(dir, 'builtin');
    await queueWith(undefined, queue, ['user@localhost']);
    const r = await runCli(['runqueue', '--queue', queue], 60_000);
    assert.match(r.stderr, /using the built-in receiver/);
    assert.match(r.stderr, /no deliver\(\)/);
    assert.equal(r.code, 1);
  });

  it('names unknown ids and bad arguments', async () => {
    const queue = join(dir, 'recorded');
    const unknown = await runCli(['runqueue', '--queue', queue, '--receiver', FLAKY, '0000000000000ZZZZ'], 60_000);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /0000000000000ZZZZ: no such message/);
    const bad = await runCli(['runqueue', '--queue', queue, '../etc'], 60_000);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /"\.\.\/etc" is not a queue id/);
    const notQueue = await runCli(['runqueue', '--queue', join(dir, 'nowhere')], 60_000);
    assert.equal(notQueue.code, 2);
    assert.match(notQueue.stderr, /--queue: .*nowhere is not a queue directory/);
  });
});

describe('the public API (src/index.ts)', () => {
  it('startTestServer, runQueue and showQueue work through the lazy entry points', async () => {
    const api = await import('../src/index.ts');
    const server = await api.startTestServer({ receiverPath: FLAKY, runner: false });
    let queueDir: string;
    try {
      queueDir = server.queueDir;
      const c = await RawClient.ready(server.port);
      queuedId(await c.send('s@example.org', ['ok@localhost'], 'Subject: api\r\n\r\nx\r\n'));
      await c.quit();
      const chunks: string[] = [];
      const { Writable } = await import('node:stream');
      const out = new Writable({ write(chunk, _enc, cb) { chunks.push(String(chunk)); cb(); } });
      // by queue directory: through the running server's control socket
      assert.deepEqual(await api.showQueue(server.queueDir, out, { json: true }), []);
      assert.equal(chunks.join('').trim().split('\n').length, 1);
    } finally {
      await server.close(); // keep the queue for runQueue; removed below
    }
    const said: string[] = [];
    const r = await api.runQueue({ queueDir, say: (l) => said.push(l) });
    assert.equal(r.delivered, 1);
    assert.deepEqual(r.missing, []);
    assert.match(said.join('\n'), /recorded by serve/);
    await rm(queueDir, { recursive: true, force: true });
  });
});
