/** A real client: nodemailer sends text, an attachment and a UTF-8 subject; the stored message reads back. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { afterTraceHeaders, bareLineEnds, storedMessage } from './helpers/queue.ts';
import { decodeWords, multipartParts, parsePart } from './helpers/mime.ts';

const smtpTransport = (port: number) => nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });

describe('nodemailer as the client', () => {
  let server: TestServer;
  let transport: ReturnType<typeof smtpTransport>;
  before(async () => {
    server = await startTestServer();
    transport = smtpTransport(server.port);
  });
  after(async () => {
    transport.close();
    await server.stop();
  });

  it('sends text + attachment + UTF-8 subject; the stored message parses back', async () => {
    const subject = 'Grüße aus Köln — 東京 ✉';
    const attachment = randomBytes(5000);
    const info = await transport.sendMail({
      from: 'Sender <sender@example.org>',
      to: 'Rcpt <rcpt@localhost>',
      subject,
      text: 'Hello from nodemailer.\nSecond line.\n.\nA line with just a dot above.\n',
      attachments: [{ filename: 'data.bin', content: attachment, contentType: 'application/octet-stream' }],
    });
    assert.match(info.response, /^250 2\.0\.0 Ok: queued as [0-9A-Z]{17}$/);
    assert.deepEqual(info.accepted, ['rcpt@localhost']);
    const id = /queued as ([0-9A-Z]+)/.exec(info.response)![1]!;

    const stored = (await storedMessage(server.store, id))!;
    assert.equal(stored.record.msg.from, 'sender@example.org');
    assert.deepEqual(stored.record.msg.to, ['rcpt@localhost']);
    assert.equal(bareLineEnds(stored.bytes), 0);
    const message = parsePart(afterTraceHeaders(stored.bytes).toString('latin1'));
    assert.equal(decodeWords(message.headers.get('subject')!), subject);
    assert.equal(message.headers.get('message-id'), info.messageId);

    const parts = multipartParts(message);
    assert.equal(parts.length, 2);
    const [text, file] = parts as [typeof parts[0], typeof parts[0]];
    assert.match(text.headers.get('content-type')!, /^text\/plain/);
    assert.ok(text.body.includes('\r\n.\r\nA line with just a dot above.'), 'the lone-dot line survived dot-stuffing');
    assert.match(file.headers.get('content-disposition')!, /^attachment; filename=data\.bin$|^attachment; filename="data\.bin"$/);
    assert.equal(file.headers.get('content-transfer-encoding'), 'base64');
    assert.ok(Buffer.from(file.body.replace(/\r\n/g, ''), 'base64').equals(attachment), 'the attachment decodes to what was sent');
  });

  it('a refused recipient makes sendMail reject with responseCode 550', async () => {
    const count = server.store.count();
    await assert.rejects(
      transport.sendMail({ from: 'sender@example.org', to: 'someone@example.com', subject: 'relay?', text: 'no' }),
      (err: Error & { responseCode?: number; response?: string }) => {
        assert.equal(err.responseCode, 550);
        assert.match(err.response ?? '', /^550 5\.7\.1 /);
        return true;
      },
    );
    assert.equal(server.store.count(), count);
  });
});
