/** Raw-socket SMTP sessions against the receive path: the protocol features and limits a client sees. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { RawClient, dotStuff, queuedId } from './helpers/smtp.ts';
import { afterTraceHeaders, spoolFiles, storedMessage, traceHeaderText, until } from './helpers/queue.ts';

const LIMITS = fileURLToPath(new URL('./fixtures/limits.ts', import.meta.url));

describe('session: default receiver', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer(); });
  after(async () => { await server.stop(); });

  it('happy path: EHLO advertises the extensions, the message is queued with its envelope', async () => {
    const c = await RawClient.greeted(server.port);
    const ehlo = await c.command('EHLO client.test');
    assert.equal(ehlo.code, 250);
    for (const ext of ['PIPELINING', '8BITMIME', 'SIZE 20000000']) assert.ok(ehlo.lines.some((l) => l.slice(4) === ext), `EHLO lists ${ext}`);
    const body = 'From: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n';
    const id = queuedId(await c.send('a@example.org', ['b@localhost'], body));
    await c.quit();
    const stored = (await storedMessage(server.store, id))!;
    const msg = stored.record.msg;
    assert.equal(msg.id, id);
    assert.equal(msg.from, 'a@example.org');
    assert.deepEqual(msg.to, ['b@localhost']);
    assert.equal(msg.helo, 'client.test');
    assert.equal(msg.peerAddr, '127.0.0.1');
    assert.equal(msg.mimeType, '7BIT');
    assert.equal(msg.size, stored.bytes.length);
    assert.equal(stored.record.state, 'queued');
    assert.equal(afterTraceHeaders(stored.bytes).toString('latin1'), body);
    assert.match(traceHeaderText(stored.bytes), /\tfor <b@localhost>; /);
    assert.doesNotMatch(traceHeaderText(stored.bytes), /X-Envelope-To/, 'addEnvelope() is false by default');
  });

  it('PIPELINING: MAIL, RCPTs and DATA in one write get their replies in order', async () => {
    const c = await RawClient.ready(server.port);
    const replies = await c.pipelined([
      'MAIL FROM:<p@example.org>', 'RCPT TO:<one@localhost>', 'RCPT TO:<out@example.com>', 'RCPT TO:<two@localhost>', 'DATA',
    ]);
    assert.deepEqual(replies.map((r) => r.code), [250, 250, 550, 250, 354]);
    c.write('Subject: pipelined\r\n\r\nbody\r\n.\r\n');
    const id = queuedId(await c.read());
    await c.quit();
    assert.deepEqual(server.store.get(id)!.msg.to, ['one@localhost', 'two@localhost']);
  });

  it('8-bit body with BODY=8BITMIME is stored byte for byte, mimeType 8BITMIME', async () => {
    const high = Buffer.from(Array.from({ length: 128 }, (_, i) => 0x80 + i));
    const body = Buffer.concat([Buffer.from('Subject: 8bit\r\n\r\n'), high, Buffer.from('\r\n'), high.subarray(64), Buffer.from('\r\n')]);
    const c = await RawClient.ready(server.port);
    const env = await c.envelope('e@example.org', ['b@localhost'], 'BODY=8BITMIME');
    assert.deepEqual(env.map((r) => r.code), [250, 250]);
    const id = queuedId(await c.data(body));
    await c.quit();
    const stored = (await storedMessage(server.store, id))!;
    assert.equal(stored.record.msg.mimeType, '8BITMIME');
    assert.ok(afterTraceHeaders(stored.bytes).equals(body), 'every byte 0x80-0xff is kept');
  });

  it('without BODY=8BITMIME the record says 7BIT (explicit BODY=7BIT too)', async () => {
    const c = await RawClient.ready(server.port);
    const plain = queuedId(await c.send('s@example.org', ['b@localhost'], 'x\r\n'));
    await c.envelope('s@example.org', ['b@localhost'], 'BODY=7BIT');
    const explicit = queuedId(await c.data('y\r\n'));
    await c.quit();
    assert.equal(server.store.get(plain)!.msg.mimeType, '7BIT');
    assert.equal(server.store.get(explicit)!.msg.mimeType, '7BIT');
  });

  it('dot-stuffing: lines starting with "." (and a line that is just ".") are stored unstuffed', async () => {
    const body = '.starts with a dot\r\n..two dots\r\n.\r\nmiddle\r\n. \r\n...\r\n.\r\nend\r\n';
    const stuffed = dotStuff(body);
    assert.notEqual(stuffed, body);
    const c = await RawClient.ready(server.port);
    const id = queuedId(await c.send('d@example.org', ['b@localhost'], stuffed));
    await c.quit();
    const stored = (await storedMessage(server.store, id))!;
    assert.equal(afterTraceHeaders(stored.bytes).toString('latin1'), body);
  });

  it('MAIL FROM:<> (the null sender) is stored as from ""', async () => {
    const c = await RawClient.ready(server.port);
    const id = queuedId(await c.send('', ['b@localhost'], 'Subject: bounce\r\n\r\nx\r\n'));
    await c.quit();
    assert.equal(server.store.get(id)!.msg.from, '');
  });

  it('refuses relaying with 550 5.7.1; DATA without a recipient is refused, nothing queued', async () => {
    const before = server.store.count();
    const c = await RawClient.ready(server.port);
    const [mail, rcpt] = await c.envelope('a@example.org', ['someone@example.com']);
    assert.equal(mail!.code, 250);
    assert.match(rcpt!.text, /^550 5\.7\.1 /);
    assert.equal((await c.command('DATA')).code, 503);
    await c.quit();
    assert.equal(server.store.count(), before);
  });
});

describe('session: local domains (--domain)', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer({ domains: ['example.com', 'Mail.Example.NET'] }); });
  after(async () => { await server.stop(); });

  it('accepts the configured domains (any case) and only them', async () => {
    const c = await RawClient.ready(server.port);
    const replies = await c.envelope('x@example.org', ['a@example.com', 'B@MAIL.EXAMPLE.NET', 'c@localhost', 'd@sub.example.com']);
    assert.deepEqual(replies.map((r) => r.code), [250, 250, 250, 550, 550]);
    const id = queuedId(await c.data('x\r\n'));
    await c.quit();
    assert.deepEqual(server.store.get(id)!.msg.to, ['a@example.com', 'B@MAIL.EXAMPLE.NET']);
  });
});

describe('session: receiver limits, redirects and X-Envelope-To (fixture)', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer({ receiverPath: LIMITS, inlineMax: 1024 }); });
  after(async () => { await server.stop(); });

  it('the 4th RCPT gets 452 4.5.3; the message goes to the first 3', async () => {
    const c = await RawClient.ready(server.port);
    const replies = await c.envelope('a@example.org', ['r1@localhost', 'r2@localhost', 'r3@localhost', 'r4@localhost']);
    assert.deepEqual(replies.map((r) => r.code), [250, 250, 250, 250, 452]);
    assert.match(replies[4]!.text, /^452 4\.5\.3 /);
    const id = queuedId(await c.data('x\r\n'));
    await c.quit();
    assert.deepEqual(server.store.get(id)!.msg.to, ['r1@localhost', 'r2@localhost', 'r3@localhost']);
  });

  it('a message over maxDataLength gets 552 5.3.4 at the end of DATA, leaves nothing, and the session goes on', async () => {
    const before = server.store.count();
    const c = await RawClient.ready(server.port);
    await c.envelope('big@example.org', ['b@localhost']);
    assert.equal((await c.command('DATA')).code, 354);
    const line = `${'x'.repeat(98)}\r\n`;
    // past inlineMax (1024) first, so the body is going to a spool file …
    c.write(line.repeat(30));
    await until(async () => (await spoolFiles(server.queueDir)).length === 1, 'the spool file of the big message');
    // … then past maxDataLength (10,000)
    c.write(line.repeat(200));
    c.write('.\r\n');
    const reply = await c.read();
    assert.equal(reply.code, 552);
    assert.match(reply.text, /^552 5\.3\.4 /);
    assert.equal(server.store.count(), before, 'nothing queued');
    assert.deepEqual(await spoolFiles(server.queueDir), [], 'no spool file left');
    const id = queuedId(await c.send('small@example.org', ['b@localhost'], 'still works\r\n'));
    await c.quit();
    assert.ok(server.store.has(id));
  });

  it('a message over maxDataLength in one write is refused too (no spool file ever)', async () => {
    const before = server.store.count();
    const c = await RawClient.ready(server.port);
    const reply = await c.send('big@example.org', ['b@localhost'], `${'y'.repeat(78)}\r\n`.repeat(500));
    assert.match(reply.text, /^552 5\.3\.4 /);
    await c.quit();
    assert.equal(server.store.count(), before);
    assert.deepEqual(await spoolFiles(server.queueDir), []);
  });

  it('a message of exactly maxDataLength bytes is accepted', async () => {
    const body = `${'z'.repeat(98)}\r\n`.repeat(100);
    assert.equal(body.length, 10_000);
    const c = await RawClient.ready(server.port);
    const id = queuedId(await c.send('edge@example.org', ['b@localhost'], body));
    await c.quit();
    const stored = (await storedMessage(server.store, id))!;
    assert.equal(afterTraceHeaders(stored.bytes).toString('latin1'), body);
  });

  it('a redirect replaces the recipient by the redirect targets', async () => {
    const c = await RawClient.ready(server.port);
    const id = queuedId(await c.send('a@example.org', ['alias@localhost', 'other@localhost'], 'x\r\n'));
    await c.quit();
    const to = server.store.get(id)!.msg.to;
    assert.deepEqual(to, ['first@localhost', 'second@localhost', 'other@localhost']);
    assert.ok(!to.includes('alias@localhost'));
  });

  it('addEnvelope() true prepends one X-Envelope-To: per recipient (after redirects)', async () => {
    const c = await RawClient.ready(server.port);
    const body = 'Subject: env\r\n\r\nx\r\n';
    const id = queuedId(await c.send('a@example.org', ['alias@localhost', 'bcc@localhost'], body));
    await c.quit();
    const stored = (await storedMessage(server.store, id))!;
    const trace = traceHeaderText(stored.bytes);
    const envelopeTo = trace.split('\r\n').filter((l) => l.startsWith('X-Envelope-To:'));
    assert.deepEqual(envelopeTo, ['X-Envelope-To: <first@localhost>', 'X-Envelope-To: <second@localhost>', 'X-Envelope-To: <bcc@localhost>']);
    assert.equal(afterTraceHeaders(stored.bytes).toString('latin1'), body);
  });
});
