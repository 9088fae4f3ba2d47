/**
 * The greeting pause (`--greet-pause`, smtp-server patched at run time by
 * src/patch/smtp-server.ts): with 0 a command sent before the greeting is
 * answered after it; with a pause a client that talks first is refused with
 * 421. And the daemon refuses to start on an smtp-server without the patch
 * (test/patch.test.ts: the patch itself refuses any other code).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { SMTP_SERVER_PATCH } from '../src/patch/smtp-server.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { afterTraceHeaders, storedMessage } from './helpers/queue.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

describe('greetPause: 0 (the default)', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer(); });
  after(async () => { await server?.stop(); });

  it('answers a command sent before the greeting after the greeting', async () => {
    const c = await RawClient.connect(server.port);
    try {
      c.write('EHLO early.test\r\n'); // before reading anything
      const greeting = await c.read();
      assert.equal(greeting.code, 220, greeting.text);
      const ehlo = await c.read();
      assert.equal(ehlo.code, 250, ehlo.text);
      assert.match(ehlo.lines[0]!, /^250-test\.invalid /);
    } finally {
      await c.quit();
    }
  });

  it('answers several early commands in order, then serves a whole transaction', async () => {
    const c = await RawClient.connect(server.port);
    try {
      c.write('EHLO early.test\r\nNOOP\r\nMAIL FROM:<a@example.org>\r\n');
      const replies = [await c.read(), await c.read(), await c.read(), await c.read()];
      assert.deepEqual(replies.map((r) => r.code), [220, 250, 250, 250], replies.map((r) => r.text).join(' | '));
      const rcpt = await c.command('RCPT TO:<b@localhost>');
      assert.equal(rcpt.code, 250, rcpt.text);
      const body = 'Subject: early\r\n\r\ntalked first\r\n';
      const id = queuedId(await c.data(body));
      const stored = await storedMessage(server.store, id);
      assert.equal(stored?.record.msg.helo, 'early.test');
      assert.equal(afterTraceHeaders(stored!.bytes).toString('latin1'), body);
    } finally {
      await c.quit();
    }
  });
});

describe('greetPause: 500', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer({ greetPause: 500 }); });
  after(async () => { await server?.stop(); });

  it('refuses a client that talks before the greeting with 421 and disconnects it', async () => {
    const c = await RawClient.connect(server.port);
    try {
      c.write('EHLO early.test\r\n');
      const reply = await c.read();
      assert.equal(reply.code, 421, reply.text);
      assert.match(reply.text, /talk too soon/i);
      assert.ok(await c.closedByServer(), 'the server closed the connection');
    } finally {
      c.socket.destroy();
    }
  });

  it('serves a client that waits for the greeting', async () => {
    const c = await RawClient.ready(server.port); // reads the 220 first, then EHLO
    try {
      const id = queuedId(await c.send('a@example.org', ['b@localhost'], 'Subject: patient\r\n\r\nwaited\r\n'));
      assert.ok(server.store.has(id));
    } finally {
      await c.quit();
    }
  });
});

describe('the smtp-server patch', () => {
  it('is loaded: SMTPServer carries the patch marker', () => {
    assert.equal((SMTPServer as unknown as { smtpReceivePatch?: number }).smtpReceivePatch, SMTP_SERVER_PATCH);
  });

  it('the daemon refuses to start without it', async () => {
    const marked = SMTPServer as unknown as { smtpReceivePatch?: number };
    const saved = marked.smtpReceivePatch;
    delete marked.smtpReceivePatch;
    try {
      await assert.rejects(startTestServer(), /smtp-server is not patched/);
    } finally {
      marked.smtpReceivePatch = saved;
    }
  });
});
