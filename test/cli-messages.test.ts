/** The queue commands' messages for common mistakes: they name the flag, the queue or the next step. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createServer } from 'node:net';
import { CliProcess, REPO_ROOT, runCli, spawnCli } from './helpers/cli.ts';
import { enqueueTest } from './helpers/enqueue.ts';
import { ownQueue } from './helpers/owned.ts';
import { QueueStore } from '../src/core/store.ts';

const FLAKY = new URL('./fixtures/flaky-deliver.ts', import.meta.url).pathname;
let tmp: string;
let queue: string;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-msgs-'));
  queue = join(tmp, 'queue');
  const q = await ownQueue(queue);
  try {
    await enqueueTest(q.store, { to: ['ok@localhost'], time: Date.now() + 3600_000 }); // due in an hour
  } finally {
    await q.close();
  }
});
after(async () => { await rm(tmp, { recursive: true, force: true }); });

describe('queue command messages', () => {
  it('an unknown option is named, with the valid ones', async () => {
    const r = await runCli(['showqueue', '--queue', queue, '--jsn']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'smtp-receive: unknown option --jsn (valid: --receiver, --queue, --json, --bodies, --maildir, --webhook, --webhook-secret, --webhook-secret-file, --webhook-timeout, --relay, --relay-timeout, --help/-h; see --help)\n');
  });

  it('an option without its value says so', async () => {
    const r = await runCli(['hold', 'ALL', '--queue']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'smtp-receive: --queue needs a value (see --help)\n');
  });

  it('no --queue and no ./queue: says that no queue was given, not that "--queue" is wrong', async () => {
    const p = new CliProcess(spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(REPO_ROOT, 'src/main/cli.ts'), 'showqueue'], {
      cwd: await mkdtemp(join(tmp, 'empty-')), stdio: ['ignore', 'pipe', 'pipe'],
    }));
    const exit = await p.waitExit(20_000);
    assert.equal(exit.code, 2);
    assert.match(p.stderr, /^smtp-receive: no queue in \.\/queue \(.*: no db; serve creates it\): give the queue with --queue DIR\n$/);
  });

  it('showqueue with an unknown id: the error only, no "Mail queue is empty"', async () => {
    const r = await runCli(['showqueue', '--queue', queue, 'ZZZZZZZZZ0000AAAA']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /ZZZZZZZZZ0000AAAA: no such message in /);
  });

  it('runqueue with messages queued but none due says so and points to flush', async () => {
    const r = await runCli(['runqueue', '--queue', queue, '--receiver', FLAKY], 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^runqueue: 0 attempted, 0 delivered, 0 deferred, 0 held, 0 skipped\n/);
    assert.match(r.stdout, /\nrunqueue: 1 message queued, none due before \d{4}-\d\d-\d\dT[\d:.]+Z; `smtp-receive flush` makes them due now\n$/);
  });

  it('serve on IPv6 says "listening on [::1]:PORT", once', async () => {
    const p = spawnCli(['serve', '--listen', '[::1]:0', '--queue', join(tmp, 'q6'), '--no-reverse-dns', '--workers', '1']);
    try {
      const { host } = await p.ready();
      assert.equal(host, '::1');
      assert.match(p.stdout, /^smtp-receive: listening on \[::1\]:\d+, queue /);
      assert.equal((p.stdout + p.stderr).split('listening on').length - 1, 1, p.stderr);
    } finally {
      await p.kill();
    }
  });

  it('serve on a busy port says so once, naming the address, and exits 1', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const { port } = busy.address() as { port: number };
    try {
      const r = await runCli(['serve', '--listen', `127.0.0.1:${port}`, '--queue', join(tmp, 'qb'), '--no-reverse-dns', '--workers', '1']);
      assert.equal(r.code, 1);
      assert.equal(r.stderr.split('EADDRINUSE').length - 1, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    } finally {
      busy.close();
    }
  });

  it('a queue whose LMDB environment cannot be opened: the error names the queue and its db', async () => {
    const bad = join(tmp, 'bad');
    await mkdir(bad);
    await writeFile(join(bad, 'db'), 'not a directory');
    await assert.rejects(QueueStore.openOwned(bad), new RegExp(`^Error: queue ${bad}: cannot open ${bad}/db: `));
  });

  it('a queue path too long for the control socket is refused before anything is created', async () => {
    const long = join(tmp, 'x'.repeat(110), 'queue');
    const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--queue', long, '--no-reverse-dns', '--workers', '1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /control socket .*control\.sock would be \d+ bytes long; Unix sockets allow 107/);
    assert.equal(existsSync(long), false);
  });
});
