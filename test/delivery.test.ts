/**
 * Delivery from a running daemon: immediate first attempt, failing workers, several runners on one queue
 * (the daemon's own, and the passes `runqueue` processes ask it for through its control socket), back-pressure.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { spawnCli } from './helpers/cli.ts';
import { RawClient, queuedId, type Reply } from './helpers/smtp.ts';

const FLAKY = new URL('./fixtures/flaky-deliver.ts', import.meta.url).pathname;
const SLOW_PREDELIVER = new URL('./fixtures/slow-predeliver.ts', import.meta.url).pathname;
const OVERLAP = new URL('./fixtures/overlap-deliver.ts', import.meta.url).pathname;

async function until(test: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function sendOne(port: number, to: string, body = 'Subject: t\r\n\r\nhello\r\n'): Promise<Reply> {
  const c = await RawClient.ready(port);
  try {
    return await c.send('sender@example.org', [to], body);
  } finally {
    await c.quit();
  }
}

describe('daemon delivery', () => {
  let dir: string;
  let logFile: string;
  let server: TestServer;
  const attempts = async (): Promise<string[]> => (existsSync(logFile) ? (await readFile(logFile, 'utf8')).trim().split('\n') : []);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'smtp-receive-delivery-'));
    logFile = join(dir, 'deliveries.log');
    process.env.DELIVER_LOG = logFile;
    // the time limit counts a task's wait for a worker too: after `exit` and `hang` the pool replaces two workers,
    // and a replacement loading the fixture under tsx on a busy machine has taken over 2 s (the later message then
    // ran past a 2 s limit); 6 s leaves room for that and still ends the hang soon
    server = await startTestServer({ receiverPath: FLAKY, workers: 2, deliverTimeout: 6000, pollInterval: 50 });
  });
  after(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('attempts delivery right after the 250, and removes the delivered message', async () => {
    const id = queuedId(await sendOne(server.port, 'ok@localhost'));
    await until(() => !server.store.has(id), 'the message to be delivered');
    assert.deepEqual((await attempts()).filter((l) => l.startsWith(id)), [`${id} ok@localhost`]);
  });

  for (const kind of ['exit', 'hang', 'never']) {
    it(`a deliver that ${kind === 'never' ? 'throws' : kind + 's'} leaves the message queued with error set; sessions go on`, async () => {
      const id = queuedId(await sendOne(server.port, `${kind}@localhost`));
      await until(() => (server.store.get(id)?.attempts ?? 0) >= 1, 'the first attempt to be recorded', 30_000);
      const r = server.store.get(id)!;
      assert.equal(r.state, 'queued');
      assert.ok(r.msg.error, 'error recorded');
      assert.ok(r.nextAttempt > Date.now() + 60_000, 'retry scheduled minutes away (default backoff)');
      const next = queuedId(await sendOne(server.port, 'ok@localhost'));
      await until(() => !server.store.has(next), 'a later message to be delivered', 30_000);
      await server.store.remove(id);
    });
  }
});

describe('several runners on one queue (the daemon\'s, and passes that runqueue processes run in it)', () => {
  let dir: string;
  let logFile: string;
  let server: TestServer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'smtp-receive-two-runners-'));
    logFile = join(dir, 'deliveries.log');
    process.env.DELIVER_LOG = logFile;
    // the daemon only finds messages through its poll of the due index, like a runqueue pass does; each
    // runqueue process below has the daemon (which owns the queue) run a pass with a runner of its own.
    // One attempt at a time (slow@ takes 150 ms): alone, the daemon's runner needs 12 s for the 80
    // messages, so the runqueue processes find some left even when they start slowly on a loaded
    // machine (with the default 32 attempts at once it took them all before a runqueue had started)
    server = await startTestServer({
      receiverPath: FLAKY, workers: 1, immediate: false, pollInterval: 20, maxDeliveries: 1, queueDir: join(dir, 'queue'),
    });
  });
  after(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('delivers each message exactly once', async () => {
    const ids: string[] = [];
    const c = await RawClient.ready(server.port);
    for (let i = 0; i < 80; i++) ids.push(queuedId(await c.send('s@example.org', ['slow@localhost'], `Subject: ${i}\r\n\r\nx\r\n`)));
    await c.quit();
    const runners = [0, 1, 2].map(() => spawnCli(
      ['runqueue', '--queue', server.queueDir, '--receiver', FLAKY, '--workers', '2'], { DELIVER_LOG: logFile },
    ));
    const exits = await Promise.all(runners.map((r) => r.waitExit(60_000)));
    for (const [i, e] of exits.entries()) assert.ok(e.code === 0 || e.code === 1, `runqueue ${i} exited ${e.code}: ${runners[i]!.stderr}`);
    await until(() => ids.every((id) => !server.store.has(id)), 'all messages to be delivered', 30_000);
    const lines = (await readFile(logFile, 'utf8')).trim().split('\n');
    const counts = new Map<string, number>();
    for (const l of lines) counts.set(l.split(' ')[0]!, (counts.get(l.split(' ')[0]!) ?? 0) + 1);
    for (const id of ids) assert.equal(counts.get(id), 1, `${id} delivered ${counts.get(id)} times`);
    const byRunqueue = runners.map((r) => /(\d+) delivered/.exec(r.stdout)?.[1]).map(Number);
    assert.ok(byRunqueue.some((n) => n > 0), `the runqueue processes delivered some: ${byRunqueue}\n${runners.map((r) => r.stdout + r.stderr).join("\n")}`);
  });
});

describe('back-pressure', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer({ receiverPath: SLOW_PREDELIVER, workers: 1, workerQueue: 1 }); });
  after(async () => { await server.stop(); });

  it('answers 451 4.3.2 when the worker queue is full, and loses no 250\'d message', async () => {
    const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => sendOne(server.port, 'user@localhost', `Subject: ${i}\r\n\r\nx\r\n`)));
    const ok = replies.filter((r) => r.code === 250);
    const busy = replies.filter((r) => r.code === 451);
    assert.ok(busy.length > 0, `some got 451: ${replies.map((r) => r.code)}`);
    assert.ok(ok.length > 0, 'some got 250');
    for (const r of busy) assert.match(r.text, /^451 4\.3\.2 /);
    assert.equal(ok.length + busy.length, replies.length);
    for (const r of ok) assert.ok(server.store.has(queuedId(r)));
    assert.equal(server.store.count(), ok.length);
  });
});

describe('--max-deliveries: attempts in flight at once', () => {
  /** Sends `n` messages whose deliver takes 400 ms (one worker), and returns the most delivers that ran at one time. */
  async function peakRunning(maxDeliveries: number | undefined, n: number): Promise<number> {
    const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-max-deliveries-'));
    const logFile = join(dir, 'deliveries.log');
    process.env.DELIVER_LOG = logFile;
    const server = await startTestServer({ receiverPath: OVERLAP, workers: 1, pollInterval: 20, maxDeliveries });
    try {
      const ids = await Promise.all(Array.from({ length: n }, async () => queuedId(await sendOne(server.port, 'user@localhost'))));
      await until(() => ids.every((id) => !server.store.has(id)), 'every message to be delivered', 30_000);
      const lines = (await readFile(logFile, 'utf8')).trim().split('\n');
      assert.equal(lines.length, n, 'each delivered once');
      return Math.max(...lines.map((l) => Number(l.split(' ')[1])));
    } finally {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('with --max-deliveries 1 one deliver runs at a time; by default several do', async () => {
    assert.equal(await peakRunning(1, 6), 1);
    assert.ok(await peakRunning(undefined, 6) > 1, 'the default (32 per worker) lets several run at once');
  });
});
