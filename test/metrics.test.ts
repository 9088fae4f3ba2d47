/**
 * /metrics after real SMTP traffic: every count moves exactly as the traffic
 * says; the exposition passes `promtool check metrics`; /healthz and /readyz.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { METRICS } from '../src/main/metrics/definitions.ts';
import { startTestServer } from '../src/testing.ts';
import { parseExposition, scrape, until, valueOf } from './helpers/metrics.ts';
import { REPO_ROOT } from './helpers/cli.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

const RECEIVER = fileURLToPath(new URL('./fixtures/events-receiver.ts', import.meta.url));
const BODY = 'Subject: hi\r\n\r\nhello\r\n';
const PROMTOOL = '/usr/bin/promtool';

describe('metrics', () => {
  it('count the traffic exactly: accepted, rejected by stage and reason, delivered and deferred', async () => {
    const server = await startTestServer({ receiverPath: RECEIVER, retryMin: 600_000, metrics: '127.0.0.1:0' });
    try {
      assert.ok(server.metricsPort && server.metricsPort > 0, 'the bound metrics port');
      const c = await RawClient.ready(server.port);
      queuedId(await c.send('a@example.org', ['ok@localhost'], BODY));
      queuedId(await c.send('b@example.org', ['defer@localhost'], BODY));
      const [, rcpt] = await c.envelope('c@example.org', ['nobody@localhost']);
      assert.equal(rcpt!.code, 550);
      await c.command('RSET');
      assert.equal((await c.send('spam@example.org', ['ok@localhost'], BODY)).code, 554);
      await c.quit();

      const M = METRICS;
      const samples = await until(async () => {
        const s = parseExposition((await scrape(server.metricsPort!)).text);
        const attempts = (valueOf(s, M.deliveries.name, { outcome: 'delivered' }) ?? 0) + (valueOf(s, M.deliveries.name, { outcome: 'deferred' }) ?? 0);
        return attempts >= 2 && valueOf(s, M.connectionsActive.name) === 0 ? s : undefined;
      }, 'two delivery attempts and the session closed');

      const v = (name: string, labels?: Record<string, string>): number | undefined => valueOf(samples, name, labels);
      assert.equal(v(M.connections.name), 1);
      assert.equal(v(M.accepted.name), 2);
      assert.equal(v(M.rejected.name, { stage: 'rcpt', reason: 'receiver' }), 1);
      assert.equal(v(M.rejected.name, { stage: 'predeliver', reason: 'receiver' }), 1);
      assert.equal(samples.filter((s) => s.name === M.rejected.name).length, 2, 'no other rejection');
      assert.equal(samples.filter((s) => s.name === M.tempFailed.name).length, 0, 'no 4xx');
      assert.equal(v(M.deliveries.name, { outcome: 'delivered' }), 1);
      assert.equal(v(M.deliveries.name, { outcome: 'deferred' }), 1);
      assert.equal(v(`${M.predeliver.name}_count`, { outcome: 'accept' }), 2);
      assert.equal(v(`${M.predeliver.name}_count`, { outcome: 'reject' }), 1);
      assert.equal(v(`${M.messageSize.name}_count`), 2);
      assert.equal(v(`${M.eodToReply.name}_count`), 2);
      assert.ok(v(M.receivedBytes.name)! > 2 * BODY.length, 'stored bytes, trace headers included');
      assert.equal(v(M.receivedBytes.name), v(`${M.messageSize.name}_sum`));
      assert.ok(v(`${M.commit.name}_count`)! >= 2, 'the enqueue commits were timed');
      // replies by command and class: EHLO, 2 × (MAIL, RCPT, DATA 354 + 250), RCPT 550, RSET, spam's 554, QUIT
      assert.equal(v(M.replies.name, { command: 'CONNECT', class: '2xx' }), 1);
      assert.equal(v(M.replies.name, { command: 'RCPT', class: '2xx' }), 3);
      assert.equal(v(M.replies.name, { command: 'RCPT', class: '5xx' }), 1);
      assert.equal(v(M.replies.name, { command: 'DATA', class: '3xx' }), 3);
      assert.equal(v(M.replies.name, { command: 'DATA', class: '2xx' }), 2);
      assert.equal(v(M.replies.name, { command: 'DATA', class: '5xx' }), 1);
      assert.equal(v(M.replies.name, { command: 'QUIT', class: '2xx' }), 1);
      // the queue: the deferred message waits for its retry; nothing is due or leased
      assert.equal(v(M.queueMessages.name, { state: 'queued' }), 1);
      assert.equal(v(M.queueMessages.name, { state: 'hold' }), 0);
      assert.equal(v(M.queueDue.name), 0);
      assert.equal(v(M.queueLeases.name), 0);
      assert.ok(v(M.queueOldestAge.name)! >= 0);
      assert.equal(v(M.workerThreads.name, { state: 'ready' }), 1);
      assert.ok(v(M.workerTasks.name)! >= 5, 'pings, predelivers and deliveries ran in the pool');
      assert.ok(v(M.workerBusy.name)! > 0);
      assert.ok(v('process_resident_memory_bytes')! > 0, 'default process metrics are there');
      assert.ok(v('nodejs_eventloop_lag_p99_seconds') !== undefined, 'event-loop delay is there');
      assert.equal(v('nodejs_active_handles_total'), undefined, 'the gauges promtool rejects are left out');

      assert.equal((await scrape(server.metricsPort!, '/healthz')).status, 200);
      const ready = await scrape(server.metricsPort!, '/readyz');
      assert.equal(ready.status, 200, ready.text);
      assert.equal((await scrape(server.metricsPort!, '/nope')).status, 404);
    } finally {
      await server.stop();
    }
  });

  it('the exposition passes promtool check metrics', async (t) => {
    if (spawnSync(PROMTOOL, ['--version']).status !== 0) return t.skip(`${PROMTOOL} is not installed (Debian package prometheus)`);
    const server = await startTestServer({ receiverPath: RECEIVER, retryMin: 600_000, metrics: '127.0.0.1:0' });
    try {
      const c = await RawClient.ready(server.port);
      queuedId(await c.send('a@example.org', ['ok@localhost'], BODY));
      await c.envelope('c@example.org', ['nobody@localhost']);
      await c.quit();
      const { text, type } = await scrape(server.metricsPort!);
      assert.match(type, /^text\/plain; version=0\.0\.4/);
      const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
      assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'no lint problem');
    } finally {
      await server.stop();
    }
  });

  it('counts connections refused for too many clients', async () => {
    const server = await startTestServer({ maxClients: 1, metrics: '127.0.0.1:0' });
    try {
      const first = await RawClient.greeted(server.port);
      const second = await RawClient.connect(server.port);
      assert.equal((await second.read()).code, 421);
      await second.quit();
      const s = parseExposition((await scrape(server.metricsPort!)).text);
      assert.equal(valueOf(s, METRICS.connectionsRefused.name, { reason: 'max-clients' }), 1);
      assert.equal(valueOf(s, METRICS.replies.name, { command: 'CONNECT', class: '4xx' }), 1);
      assert.equal(valueOf(s, METRICS.connectionsActive.name), 1);
      await first.quit();
    } finally {
      await server.stop();
    }
  });

  it("README's Monitoring table lists exactly the metrics defined", () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Monitoring'), readme.indexOf('\n## ', readme.indexOf('\n## Monitoring') + 1));
    const listed = [...section.matchAll(/^\| `(smtp_receive_\w+)` \| (\w+) \|/gm)].map((m) => `${m[1]} ${m[2]}`);
    assert.deepEqual(listed.sort(), Object.values(METRICS).map((d) => `${d.name} ${d.type}`).sort());
  });
});
