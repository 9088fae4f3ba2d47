/**
 * Behind a real HAProxy (Debian's haproxy, started here on loopback): one
 * frontend sends PROXY v1 (`send-proxy`), one v2 (`send-proxy-v2`). The client
 * connects from 127.0.0.2, HAProxy from 127.0.0.1 (the only --proxy-from
 * address), so the two differ: the session, the stored message and its
 * Received header must show 127.0.0.2 and the client's own port.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { on, type ConnectionEvent } from '../src/core/events.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { freePort, startHaproxy, type HaproxyProcess } from './helpers/haproxy.ts';
import { storedMessage } from './helpers/queue.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

const CLIENT = '127.0.0.2';

describe('behind HAProxy (send-proxy and send-proxy-v2)', () => {
  let server: TestServer;
  let haproxy: HaproxyProcess | undefined;
  let v1Port: number;
  let v2Port: number;
  const connections: ConnectionEvent[] = [];
  let off = (): void => {};

  before(async () => {
    server = await startTestServer({ proxyFrom: ['127.0.0.1'] });
    [v1Port, v2Port] = [await freePort(), await freePort()];
    haproxy = await startHaproxy(`
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen smtp-v1
    bind 127.0.0.1:${v1Port}
    server node 127.0.0.1:${server.port} send-proxy
listen smtp-v2
    bind 127.0.0.1:${v2Port}
    server node 127.0.0.1:${server.port} send-proxy-v2
`, v1Port);
    off = on('connection', (e) => connections.push(e));
  });
  after(async () => {
    off();
    await haproxy?.stop();
    await server?.stop();
  });

  for (const version of ['v1', 'v2'] as const) {
    it(`PROXY ${version}: the session sees the client's address and port, and so do the message and its Received header`, async () => {
      const port = version === 'v1' ? v1Port : v2Port;
      const c = await RawClient.connect(port, '127.0.0.1', CLIENT);
      assert.equal((await c.read()).code, 220);
      assert.equal((await c.command('EHLO client.test')).code, 250);
      const id = queuedId(await c.send('a@example.org', ['b@localhost'], `Subject: through ${version}\r\n\r\nx\r\n`));
      const clientPort = c.socket.localPort;
      await c.quit();
      assert.deepEqual(connections.filter((e) => e.remotePort === clientPort).map((e) => e.remoteAddress), [CLIENT]);
      const stored = (await storedMessage(server.store, id))!;
      assert.equal(stored.record.msg.peerAddr, CLIENT);
      assert.match(stored.bytes.toString('latin1'), /^Received: from client\.test \(\[127\.0\.0\.2\]\)\r\n/);
    });
  }

  it('nodemailer through the v2 frontend', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: v2Port, localAddress: CLIENT, secure: false, ignoreTLS: true, name: 'nodemailer.test' });
    try {
      const info = await transport.sendMail({ from: 'a@example.org', to: 'b@localhost', subject: 'via haproxy', text: 'hello' });
      const id = /queued as ([0-9A-Z]+)/.exec(info.response)![1]!;
      const stored = (await storedMessage(server.store, id))!;
      assert.equal(stored.record.msg.peerAddr, CLIENT);
      assert.match(stored.bytes.toString('latin1'), /^Received: from nodemailer\.test \(\[127\.0\.0\.2\]\)\r\n/);
    } finally {
      transport.close();
    }
  });

  it('a client connecting straight to the server from 127.0.0.1 (a --proxy-from address) without a header is refused', async () => {
    const c = await RawClient.connect(server.port);
    c.write('EHLO client.test\r\n');
    const replies = await c.readUntilClosed();
    assert.deepEqual(replies.map((r) => r.code), [421]);
  });
});
