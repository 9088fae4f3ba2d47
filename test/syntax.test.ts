/**
 * Strict syntax where the RFCs are strict (src/patch/smtp-syntax.ts), over raw
 * sockets: unknown MAIL/RCPT parameters, quoted local parts, non-ASCII
 * addresses without SMTPUTF8, NUL and bare CR in commands; each refusal is a
 * `rejected` event. And the open-relay probe against serve's default receiver.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { on, type RejectedEvent } from '../src/core/events.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';
import { storedMessage } from './helpers/queue.ts';

/** The `rejected` events published while `run` runs. */
async function rejectedDuring(run: () => Promise<void>): Promise<RejectedEvent[]> {
  const seen: RejectedEvent[] = [];
  const off = on('rejected', (e) => seen.push(e));
  try {
    await run();
  } finally {
    off();
  }
  return seen;
}

describe('strict syntax', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer(); });
  after(async () => { await server.stop(); });

  it('an unknown MAIL or RCPT parameter gets 555 5.5.4; the ones EHLO offers are accepted', async () => {
    const c = await RawClient.greeted(server.port);
    const ehlo = await c.command('EHLO client.test');
    const offered = ehlo.lines.map((l) => l.slice(4).split(' ')[0]);
    assert.ok(offered.includes('SMTPUTF8') && offered.includes('8BITMIME') && offered.includes('SIZE'));
    assert.ok(!offered.includes('DSN'), 'DSN is not offered, so NOTIFY/ORCPT/RET/ENVID are unknown');
    const events = await rejectedDuring(async () => {
      const foo = await c.command('MAIL FROM:<a@example.org> FOO=BAR');
      assert.equal(foo.code, 555, foo.text);
      assert.match(foo.text, /^555 5\.5\.4 MAIL parameter FOO not recognized$/);
      const ret = await c.command('MAIL FROM:<a@example.org> RET=HDRS');
      assert.equal(ret.code, 555, ret.text);
      const ok = await c.command('MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME SMTPUTF8');
      assert.equal(ok.code, 250, ok.text);
      const rcpt = await c.command('RCPT TO:<b@localhost> XYZZY');
      assert.match(rcpt.text, /^555 5\.5\.4 RCPT parameter XYZZY not recognized$/);
      const notify = await c.command('RCPT TO:<b@localhost> NOTIFY=NEVER');
      assert.equal(notify.code, 555, notify.text);
      assert.equal((await c.command('RCPT TO:<b@localhost>')).code, 250);
    });
    await c.quit();
    assert.deepEqual(events.map((e) => [e.stage, e.reason, e.code]), [
      ['mail', 'unknown-parameter', 555], ['mail', 'unknown-parameter', 555],
      ['rcpt', 'unknown-parameter', 555], ['rcpt', 'unknown-parameter', 555],
    ]);
  });

  it('quoted local parts are accepted and kept exactly, in the envelope and the stored message', async () => {
    const c = await RawClient.ready(server.port);
    const to = ['"quoted local"@localhost', '"a\\"b@c"@localhost', '"<x> y"@localhost'];
    const env = await c.envelope('"john smith"@example.org', to);
    assert.deepEqual(env.map((r) => r.code), [250, 250, 250, 250], env.map((r) => r.text).join(' | '));
    const id = queuedId(await c.data('Subject: quoted\r\n\r\nhi\r\n'));
    await c.quit();
    const stored = (await storedMessage(server.store, id))!;
    assert.equal(stored.record.msg.from, '"john smith"@example.org');
    assert.deepEqual(stored.record.msg.to, to);
  });

  it('a malformed quoted local part is refused with 501', async () => {
    const c = await RawClient.ready(server.port);
    assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 250);
    for (const bad of ['"unterminated@localhost', '"a"b@localhost', 'a"b"@localhost', '"tab\there"@localhost', '"x"']) {
      const r = await c.command(`RCPT TO:<${bad}>`);
      assert.equal(r.code, 501, `${bad}: ${r.text}`);
    }
    await c.quit();
  });

  it('a non-ASCII address without SMTPUTF8 gets 553 5.6.7; with it, it is accepted', async () => {
    const c = await RawClient.ready(server.port);
    const events = await rejectedDuring(async () => {
      const mail = await c.command('MAIL FROM:<jörg@example.org>');
      assert.match(mail.text, /^553 5\.6\.7 /);
      assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 250);
      const rcpt = await c.command('RCPT TO:<élise@localhost>');
      assert.match(rcpt.text, /^553 5\.6\.7 /);
      assert.equal((await c.command('RSET')).code, 250);
      assert.equal((await c.command('MAIL FROM:<jörg@example.org> SMTPUTF8')).code, 250);
      assert.equal((await c.command('RCPT TO:<élise@localhost>')).code, 250);
      // RawClient.command writes a string as UTF-8: these bytes go as they are
      c.write(Buffer.concat([Buffer.from('RCPT TO:<'), Buffer.from([0xff, 0xfe]), Buffer.from('@localhost>\r\n')]));
      const bad = await c.read();
      assert.equal(bad.code, 501, `invalid UTF-8: ${bad.text}`);
    });
    const id = queuedId(await c.data('Subject: utf8\r\n\r\nhi\r\n'));
    await c.quit();
    const msg = server.store.get(id)!.msg;
    assert.equal(msg.from, 'jörg@example.org');
    assert.deepEqual(msg.to, ['élise@localhost']);
    assert.deepEqual(events.map((e) => [e.stage, e.reason]), [
      ['mail', 'utf8-without-smtputf8'], ['rcpt', 'utf8-without-smtputf8'], ['rcpt', 'bad-utf8'],
    ]);
  });

  it('a NUL byte or a bare CR in a command gets 500 5.5.2, and the session goes on', async () => {
    const c = await RawClient.ready(server.port);
    const events = await rejectedDuring(async () => {
      for (const line of ['NOOP\0', 'MAIL FROM:<a\0b@example.org>', 'RCPT TO:<a@localhost>\r', 'HELO a\rb']) {
        const r = await c.command(line);
        assert.match(r.text, /^500 5\.5\.2 /, JSON.stringify(line));
      }
    });
    assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 250, 'no MAIL was taken from the refused lines');
    assert.equal((await c.command('NOOP')).code, 250);
    await c.quit();
    assert.deepEqual(events.map((e) => [e.stage, e.reason]), Array(4).fill(['command', 'bad-bytes']));
  });
});

describe('open-relay probe: serve\'s default receiver (Maildir), no authentication', () => {
  let server: TestServer;
  let mail: string;
  before(async () => {
    mail = await mkdtemp(join(tmpdir(), 'smtp-receive-relay-probe-'));
    server = await startTestServer({ builtin: { kind: 'maildir', options: { root: mail } } });
  });
  after(async () => {
    await server.stop();
    await rm(mail, { recursive: true, force: true });
  });

  it('refuses every foreign recipient form with 550 5.7.1 and stores nothing', async () => {
    const c = await RawClient.ready(server.port, 'relay-probe.example.net');
    assert.equal((await c.command('MAIL FROM:<spammer@example.net>')).code, 250);
    const probes = [
      'victim@example.com', 'VICTIM@EXAMPLE.COM', '@localhost:victim@example.com', 'victim@localhost.example.com',
      'victim@example.com.', '"victim@localhost"@example.com', 'victim@[127.0.0.1]',
    ];
    for (const rcpt of probes) {
      const r = await c.command(`RCPT TO:<${rcpt}>`);
      assert.ok(r.code >= 500, `${rcpt}: ${r.text}`);
      if (r.code === 550) assert.match(r.text, /^550 5\.7\.1 /, rcpt);
    }
    assert.equal((await c.command('DATA')).code, 503, 'no recipient was accepted');
    await c.quit();
    assert.equal(server.store.count(), 0);
    assert.deepEqual(await readdir(mail), []);
  });
});
