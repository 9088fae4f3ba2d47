/** The events the daemon publishes (src/core/events.ts), which metrics and logs subscribe to. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { on, type EventName, type EventOf } from '../src/core/events.ts';
import { startTestServer } from '../src/testing.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

const RECEIVER = fileURLToPath(new URL('./fixtures/events-receiver.ts', import.meta.url));
const BODY = 'Subject: hi\r\n\r\nhello\r\n';

/** Records every event of the given names until stopped. */
function record<K extends EventName>(names: K[]): { seen: Array<{ name: K; e: EventOf<K> }>; stop(): void } {
  const seen: Array<{ name: K; e: EventOf<K> }> = [];
  const offs = names.map((name) => on(name, (e) => seen.push({ name, e })));
  return { seen, stop: () => offs.forEach((f) => f()) };
}

async function until(check: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('events', () => {
  it('a session publishes connection, rejections by stage and reason, queued, deliveries and its end', async () => {
    const rec = record(['connection', 'rejected', 'queued', 'predeliver', 'delivery', 'sessionEnd', 'commit']);
    const server = await startTestServer({ receiverPath: RECEIVER, retryMin: 600_000 });
    try {
      const c = await RawClient.ready(server.port);
      const ok = queuedId(await c.send('a@example.org', ['ok@localhost'], BODY));
      const deferred = queuedId(await c.send('b@example.org', ['defer@localhost'], BODY));
      const [, rcpt] = await c.envelope('c@example.org', ['nobody@localhost']);
      assert.equal(rcpt!.code, 550);
      await c.command('RSET');
      const spam = await c.send('spam@example.org', ['ok@localhost'], BODY);
      assert.equal(spam.code, 554);
      await c.quit();
      await until(() => rec.seen.some((s) => s.name === 'sessionEnd'), 'the session end');
      await until(() => rec.seen.filter((s) => s.name === 'delivery').length >= 2, 'two delivery attempts');

      const of = <K extends EventName>(name: K): Array<EventOf<K>> => rec.seen.filter((s) => s.name === name).map((s) => s.e as EventOf<K>);
      assert.equal(of('connection').length, 1);
      assert.deepEqual(of('queued').map((q) => q.id).sort(), [ok, deferred].sort());
      for (const q of of('queued')) {
        assert.equal(q.rcpts, 1);
        assert.ok(q.size > BODY.length, 'the stored size counts the trace headers');
        assert.ok(q.eodMs > 0 && q.eodMs < 60_000, `end-of-DATA → 250 time: ${q.eodMs}`);
      }
      const rejected = of('rejected').map((r) => [r.stage, r.reason, r.code]);
      assert.deepEqual(rejected, [['rcpt', 'receiver', 550], ['predeliver', 'receiver', 554]]);
      assert.deepEqual(of('predeliver').map((p) => p.outcome), ['accept', 'accept', 'reject']);
      const byId = new Map(of('delivery').map((d) => [d.id, d]));
      assert.equal(byId.get(ok)?.outcome, 'delivered');
      assert.equal(byId.get(deferred)?.outcome, 'deferred');
      assert.match(byId.get(deferred)!.reason!, /mailbox busy/);
      assert.ok(byId.get(deferred)!.nextAttempt! > Date.now() + 500_000, 'next attempt after the retry delay');
      assert.ok(of('commit').length >= 2, 'the enqueue commits were timed');
      const end = of('sessionEnd')[0]!;
      assert.equal(end.queued, 2);
      assert.equal(end.rejected, 2);
    } finally {
      rec.stop();
      await server.stop();
    }
  });
});
