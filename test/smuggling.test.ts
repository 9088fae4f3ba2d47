/**
 * SMTP smuggling: a body that holds a fake end of data made of a bare CR or LF
 * (`\n.\n`, `\n.\r\n`, `\r.\r\n`, …) followed by a second transaction must stay
 * one message. Only CRLF.CRLF ends DATA, and no stored message holds a bare CR or LF.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { RawClient, isQueued } from './helpers/smtp.ts';
import { afterTraceHeaders, allStored, bareLineEnds } from './helpers/queue.ts';

const SMUGGLED = 'MAIL FROM:<evil@x>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\nsmuggled\r\n';

const FAKE_ENDS: Array<[string, string]> = [
  ['\\n.\\n', '\n.\n'],
  ['\\n.\\r\\n', '\n.\r\n'],
  ['\\r.\\r\\n', '\r.\r\n'],
  ['\\r\\n.\\n', '\r\n.\n'],
  ['\\r\\n.\\r', '\r\n.\r'],
  ['\\r.\\r', '\r.\r'],
];

describe('SMTP smuggling', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer(); });
  after(async () => { await server.stop(); });

  for (const [name, fakeEnd] of FAKE_ENDS) {
    it(`a fake end of data "${name}" does not end or split the message`, async () => {
      const before = new Set(server.store.ids());
      const c = await RawClient.ready(server.port);
      const replies = await c.pipelined(['MAIL FROM:<honest@example.org>', 'RCPT TO:<user@localhost>', 'DATA']);
      assert.deepEqual(replies.map((r) => r.code), [250, 250, 354]);
      // the whole rest in one write: a server that took the fake end would answer the smuggled commands too
      c.write(Buffer.from(`Subject: smuggling\r\n\r\nbefore${fakeEnd}${SMUGGLED}\r\n.\r\nQUIT\r\n`, 'latin1'));
      const rest = await c.readUntilClosed();
      await c.quit();
      assert.equal(rest.filter(isQueued).length, 1, `exactly one 250 queued: ${rest.map((r) => r.text).join(' | ')}`);
      assert.deepEqual(rest.map((r) => r.code), [250, 221], 'the body got no replies of its own');

      const added = (await allStored(server.store)).filter((s) => !before.has(s.record.msg.id));
      assert.equal(added.length, 1, 'exactly one message queued');
      assert.equal(server.store.count(), before.size + 1);
      const stored = added[0]!;
      assert.deepEqual(stored.record.msg.to, ['user@localhost'], 'the smuggled recipient got nothing');
      assert.equal(stored.record.msg.from, 'honest@example.org');
      assert.equal(bareLineEnds(stored.bytes), 0, 'no bare CR or LF is stored');
      const text = afterTraceHeaders(stored.bytes).toString('latin1');
      assert.ok(text.includes('MAIL FROM:<evil@x>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\nsmuggled\r\n'), 'the smuggled lines are body text');
      assert.ok(text.startsWith('Subject: smuggling\r\n\r\nbefore\r\n'));
    });
  }

  it('bare CR and LF anywhere in a body are stored as CRLF', async () => {
    const c = await RawClient.ready(server.port);
    c.write('MAIL FROM:<a@example.org>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n');
    assert.deepEqual((await Promise.all([c.read(), c.read(), c.read()])).map((r) => r.code), [250, 250, 354]);
    c.write(Buffer.from('a\nb\rc\r\r\nd\n\ne\r', 'latin1'));
    c.write('\r\n.\r\n');
    const id = /queued as ([0-9A-Z]+)/.exec((await c.read()).text)?.[1];
    await c.quit();
    assert.ok(id);
    const stored = (await allStored(server.store)).find((s) => s.record.msg.id === id)!;
    assert.equal(afterTraceHeaders(stored.bytes).toString('latin1'), 'a\r\nb\r\nc\r\n\r\nd\r\n\r\ne\r\n\r\n');
    assert.equal(server.store.count(), 1 + FAKE_ENDS.length);
  });
});
