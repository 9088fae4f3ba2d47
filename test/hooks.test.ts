/** Every rejection and failure rule of the hooks: what the client is told, and that nothing is kept. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { SECRET } from './fixtures/hooks.ts';
import { RawClient, queuedId, type Reply } from './helpers/smtp.ts';
import { spoolFiles } from './helpers/queue.ts';

const HOOKS = fileURLToPath(new URL('./fixtures/hooks.ts', import.meta.url));

/** A body that is stored in a spool file (above inlineMax = 1024). */
const BIG = `Subject: big\r\n\r\n${`${'b'.repeat(78)}\r\n`.repeat(40)}`;

/**
 * Sends a well-behaved message, again after a 451 while the pool replaces a terminated worker:
 * predeliverTimeout also counts the wait for a replacement that is still booting. Bounded.
 */
async function sendQueued(c: RawClient, body: string): Promise<string> {
  let last: Reply | undefined;
  for (let attempt = 0; attempt < 20; attempt++) {
    last = await c.send('a@example.org', ['ok@localhost'], body);
    if (last.code !== 451) return queuedId(last);
    await c.command('RSET');
  }
  throw new Error(`still refused after 20 attempts: ${last?.text}`);
}

function assertLocalError(r: Reply): void {
  assert.equal(r.code, 451, r.text);
  assert.match(r.text, /^451 4\.3\.0 /);
  assert.ok(!r.text.includes(SECRET), 'the error text is not shown to the client');
  assert.ok(!/\bat .*\.ts:\d+|Error:/.test(r.text), 'no stack trace in the reply');
}

describe('checkAccess refusals', () => {
  it('a thrown 554 reply is the greeting, and the connection is closed', async () => {
    const server = await startTestServer({ receiverPath: HOOKS, hostname: 'refuse-554.test' });
    try {
      const c = await RawClient.connect(server.port);
      const greeting = await c.read();
      assert.equal(greeting.code, 554);
      assert.match(greeting.text, /^554 5\.7\.1 go away/);
      assert.ok(await c.closedByServer(), 'the server closed the connection');
      await c.quit();
    } finally {
      await server.stop();
    }
  });

  it('a thrown 421 reply is the greeting (try later), and the connection is closed', async () => {
    const server = await startTestServer({ receiverPath: HOOKS, hostname: 'refuse-421.test' });
    try {
      const c = await RawClient.connect(server.port);
      const greeting = await c.read();
      assert.equal(greeting.code, 421);
      assert.match(greeting.text, /^421 4\.3\.2 come back later/);
      assert.ok(await c.closedByServer());
      await c.quit();
      assert.equal(server.store.count(), 0);
    } finally {
      await server.stop();
    }
  });
});

describe('envelope and predeliver hooks', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ receiverPath: HOOKS, hookTimeout: 300, predeliverTimeout: 500, inlineMax: 1024 });
  });
  after(async () => { await server.stop(); });

  it('checkMailFrom returning the seed string "550 no thanks" refuses with 550 5.7.1 no thanks', async () => {
    const c = await RawClient.ready(server.port);
    const mail = await c.command('MAIL FROM:<refused@example.org>');
    assert.equal(mail.text, '550 5.7.1 no thanks');
    assert.equal((await c.command('RCPT TO:<a@localhost>')).code, 503, 'no transaction was started');
    const id = queuedId(await c.send('fine@example.org', ['a@localhost'], 'x\r\n'));
    await c.quit();
    assert.ok(server.store.has(id));
  });

  it('checkRcptTo throwing a plain Error gives 451 4.3.0 without the error text or stack', async () => {
    const c = await RawClient.ready(server.port);
    const [mail, rcpt] = await c.envelope('a@example.org', ['throw@localhost']);
    assert.equal(mail!.code, 250);
    assertLocalError(rcpt!);
    assert.equal((await c.command('DATA')).code, 503, 'the failed recipient was not accepted');
    await c.quit();
  });

  it('a main-thread hook that never resolves gets 451 4.3.0 after hookTimeout (checkRcptTo and checkMailFrom)', async () => {
    const c = await RawClient.ready(server.port);
    const [, rcpt] = await c.envelope('a@example.org', ['hang@localhost']);
    assertLocalError(rcpt!);
    assert.equal((await c.command('RSET')).code, 250);
    assertLocalError(await c.command('MAIL FROM:<hang@example.org>'));
    const id = queuedId(await c.send('a@example.org', ['ok@localhost'], 'x\r\n'));
    await c.quit();
    assert.ok(server.store.has(id), 'the session still works after the time-outs');
  });

  it('predeliver throwing SmtpReply(554, 5.7.1, spam): that reply, nothing queued, spool file removed', async () => {
    const count = server.store.count();
    const c = await RawClient.ready(server.port);
    const reply = await c.send('a@example.org', ['spam@localhost'], BIG);
    await c.quit();
    assert.equal(reply.text, '554 5.7.1 spam');
    assert.equal(server.store.count(), count);
    assert.deepEqual(await spoolFiles(server.queueDir), []);
  });

  it('predeliver throwing a plain Error gives 451 4.3.0 (inline and spooled bodies), nothing kept', async () => {
    const count = server.store.count();
    const c = await RawClient.ready(server.port);
    assertLocalError(await c.send('a@example.org', ['crash@localhost'], 'small\r\n'));
    assertLocalError(await c.send('a@example.org', ['crash@localhost'], BIG));
    await c.quit();
    assert.equal(server.store.count(), count);
    assert.deepEqual(await spoolFiles(server.queueDir), []);
  });

  it('predeliver that busy-loops past predeliverTimeout gives 451 4.3.0; the server keeps serving', async () => {
    const count = server.store.count();
    const c = await RawClient.ready(server.port);
    assertLocalError(await c.send('a@example.org', ['loop@localhost'], BIG));
    // the same session, and a new one, still get well-behaved messages queued (by a replacement worker)
    const id1 = await sendQueued(c, 'after the loop\r\n');
    await c.quit();
    const d = await RawClient.ready(server.port);
    const id2 = await sendQueued(d, BIG);
    await d.quit();
    assert.equal(server.store.count(), count + 2);
    assert.ok(server.store.has(id1) && server.store.has(id2));
    assert.deepEqual((await spoolFiles(server.queueDir)).sort(), [`${id2}.eml`], 'only the queued message has a spool file');
  });
});
