/** Stopping `serve` mid-delivery: the cut-short delivery's lease is released, so the next runner takes it at once. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { spawnCli, type CliProcess } from './helpers/cli.ts';
import { ownQueue } from './helpers/owned.ts';
import { daemonRecord } from './helpers/queue.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

const FLAKY = new URL('./fixtures/flaky-deliver.ts', import.meta.url).pathname;

let dir: string;
let daemon: CliProcess | undefined;
before(async () => { dir = await mkdtemp(join(tmpdir(), 'smtp-receive-shutdown-')); });
after(async () => {
  await daemon?.kill();
  await rm(dir, { recursive: true, force: true });
});

it('SIGTERM during a hung deliver: exits 0 and leaves the message due now, unleased, the attempt not counted', async () => {
  const queue = join(dir, 'queue');
  daemon = spawnCli(['serve', '--listen', '127.0.0.1:0', '--queue', queue, '--no-reverse-dns', '--receiver', FLAKY,
    '--deliver-timeout', '600000', '--shutdown-grace', '300']);
  const { port } = await daemon.ready();
  const c = await RawClient.ready(port);
  const id = queuedId(await c.send('s@example.org', ['hang@localhost'], 'Subject: hang\r\n\r\nx\r\n'));
  await c.quit();

  // the immediate attempt holds a lease (written with the record) and never finishes; the daemon owns
  // the queue, so we read the record through its control socket
  const leased = await daemonRecord(queue, id);
  assert.ok(leased?.lease, 'the message is leased while its deliver runs');
  assert.ok(leased.lease.until > Date.now() + 600_000, 'for the deliver time limit and more');

  const exit = await daemon.signal('SIGTERM', 30_000);
  assert.equal(exit.code, 0, daemon.stderr);
  assert.match(daemon.stderr, /released 1 lease/);

  // the daemon is gone: open the queue ourselves (ownQueue does not recover leases: what we see is what serve left)
  const { store, close } = await ownQueue(queue);
  try {
    const after = store.get(id)!;
    assert.equal(after.lease, undefined, 'lease released');
    assert.ok(after.nextAttempt <= Date.now(), 'due at once for the next runner');
    assert.equal(after.attempts, 0, 'a delivery cut short by the shutdown is not counted as an attempt');
    assert.equal(after.state, 'queued');
  } finally {
    await close();
  }
});
