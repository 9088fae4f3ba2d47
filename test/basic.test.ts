import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';
import { afterTraceHeaders, storedMessage } from './helpers/queue.ts';

describe('receive path (raw socket)', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer(); });
  after(async () => { await server.stop(); });

  it('queues a message for a local domain and answers 250 with its id', async () => {
    const c = await RawClient.ready(server.port);
    const body = 'Subject: hello\r\n\r\nHi there.\r\n';
    const id = queuedId(await c.send('sender@example.org', ['user@localhost'], body));
    await c.quit();
    const stored = await storedMessage(server.store, id);
    assert.ok(stored, 'the record is in the queue');
    assert.equal(stored.record.msg.from, 'sender@example.org');
    assert.deepEqual(stored.record.msg.to, ['user@localhost']);
    assert.equal(stored.record.msg.helo, 'client.test');
    assert.equal(afterTraceHeaders(stored.bytes).toString('latin1'), body);
    assert.match(stored.bytes.toString('latin1'), /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby test\.invalid \(smtp-receive\) with ESMTP id /);
  });

  it('refuses relaying with 550 5.7.1 and keeps serving', async () => {
    const c = await RawClient.ready(server.port);
    const [, rcpt] = await c.envelope('a@example.org', ['someone@example.com']);
    assert.equal(rcpt!.code, 550);
    assert.match(rcpt!.text, /^550 5\.7\.1 /);
    assert.equal((await c.command('RSET')).code, 250);
    const id = queuedId(await c.send('a@example.org', ['postmaster@localhost'], 'x\r\n'));
    assert.ok(server.store.has(id));
    await c.quit();
  });
});
