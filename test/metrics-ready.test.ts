/**
 * /readyz follows real conditions: 503 while no worker of the pool is ready
 * (a hung predeliver got its worker terminated, and the replacement is still
 * loading the receiver module) and 200 again once it is; 503 once the queue
 * store is closed; while the queue's file system is full (under 1 MiB free) and
 * back once space is freed; and while the server shuts down. A busy metrics port stops
 * `serve` with an error naming --metrics.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { deleteMessages } from '../src/core/queue-ops.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { runCli } from './helpers/cli.ts';
import { scrape, until } from './helpers/metrics.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

const KEEP = fileURLToPath(new URL('./fixtures/keep-queued.ts', import.meta.url));
const GATED = fileURLToPath(new URL('./fixtures/metrics-gate.ts', import.meta.url));
const BODY = 'Subject: hi\r\n\r\nhello\r\n';

describe('readiness', () => {
  let dir: string;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'smtp-receive-ready-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('503 while the worker pool has no ready worker, 200 once its replacement has loaded', async () => {
    const gate = join(dir, 'gate');
    process.env.METRICS_GATE = gate; // read by the fixture as each worker loads it
    const server = await startTestServer({ receiverPath: GATED, predeliverTimeout: 1500, retryMin: 600_000, metrics: '127.0.0.1:0' });
    try {
      const port = server.metricsPort!;
      assert.equal((await scrape(port, '/readyz')).status, 200);
      // from now on a new worker waits while loading the module
      await writeFile(gate, '');
      const c = await RawClient.ready(server.port);
      const hung = await c.send('hang@example.org', ['ok@localhost'], BODY);
      assert.equal(hung.code, 451, 'predeliver ran past its time limit: its worker was terminated');
      const down = await until(async () => {
        const r = await scrape(port, '/readyz');
        return r.status === 503 ? r : undefined;
      }, '/readyz to say 503');
      assert.match(down.text, /worker pool has no worker ready \(0 of 1/);
      assert.equal((await scrape(port, '/healthz')).status, 200, 'the process is up all the same');

      await rm(gate);
      await until(async () => (await scrape(port, '/readyz')).status === 200, '/readyz to say 200 again', 60_000);
      queuedId(await c.send('a@example.org', ['ok@localhost'], BODY));
      await c.quit();
    } finally {
      delete process.env.METRICS_GATE;
      await rm(gate, { force: true });
      await server.stop();
    }
  });

  it('503 once the queue store is closed', async () => {
    const server = await startTestServer({ metrics: '127.0.0.1:0' });
    try {
      assert.equal((await scrape(server.metricsPort!, '/readyz')).status, 200);
      await server.store.close();
      const r = await scrape(server.metricsPort!, '/readyz');
      assert.equal(r.status, 503);
      assert.match(r.text, /the queue store \(.*\) is not open/);
      const m = await scrape(server.metricsPort!);
      assert.equal(m.status, 200, 'metrics are still served (the queue gauges are left out)');
    } finally {
      await server.stop();
    }
  });

  it('503 while the queue\'s file system is full, 200 once space is freed (a 3 MiB tmpfs; needs root)', async (t) => {
    const mount = join(dir, 'full');
    await mkdir(mount);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mount], { stdio: 'ignore' });
    } catch {
      return t.skip('cannot mount a tmpfs here (needs root)');
    }
    let server: TestServer | undefined;
    try {
      server = await startTestServer({ queueDir: join(mount, 'queue'), inlineMax: 0, metrics: '127.0.0.1:0' });
      const port = server.metricsPort!;
      assert.equal((await scrape(port, '/readyz')).status, 200);
      const big = `Subject: big\r\n\r\n${`${'x'.repeat(998)}\r\n`.repeat(300)}`;
      const queued: string[] = [];
      const c = await RawClient.ready(server.port);
      for (let i = 0; i < 50; i++) {
        const r = await c.send('a@example.org', ['u@localhost'], big);
        if (r.code !== 250) break;
        queued.push(queuedId(r));
      }
      await c.quit();
      const full = await scrape(port, '/readyz');
      assert.equal(full.status, 503, full.text);
      assert.match(full.text, /file system .* is full: \d+ KiB free/);
      const r = await deleteMessages(server.store, queued);
      assert.equal(r.changed.length, queued.length);
      const back = await scrape(port, '/readyz');
      assert.equal(back.status, 200, back.text);
    } finally {
      await server?.stop();
      execFileSync('umount', [mount]);
    }
  });

  it('503 "shutting down" while the server stops, before the listener goes', async () => {
    const server = await startTestServer({ metrics: '127.0.0.1:0' });
    const port = server.metricsPort!;
    // a session still open holds the stop at its first step (smtp-server waits for it, up to 5 s)
    const c = await RawClient.ready(server.port);
    const stopping = server.stop();
    try {
      const r = await until(async () => {
        const res = await scrape(port, '/readyz');
        return res.status === 503 ? res : undefined;
      }, '/readyz to say 503');
      assert.match(r.text, /shutting down/);
    } finally {
      await c.quit();
      await stopping;
    }
    await assert.rejects(scrape(port, '/healthz'), 'the listener is closed once the server has stopped');
  });

  it('a busy metrics port stops serve with an error naming --metrics', async () => {
    const busy = createServer();
    await new Promise<void>((ok) => busy.listen(0, '127.0.0.1', ok));
    const { port } = busy.address() as AddressInfo;
    try {
      const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--queue', join(dir, 'q-busy'), '--no-reverse-dns',
        '--workers', '1', '--receiver', KEEP, '--metrics', `127.0.0.1:${port}`], 60_000);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`^smtp-receive: --metrics: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`, 'm'));
      assert.doesNotMatch(r.stdout, /listening on/);
    } finally {
      busy.close();
    }
  });
});
