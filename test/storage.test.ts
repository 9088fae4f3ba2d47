/** Byte-exact storage either side of the inline threshold, and the one body API hooks see. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { RawClient, dotStuffBytes, queuedId } from './helpers/smtp.ts';
import { afterTraceHeaders, bareLineEnds, spoolFiles, storedMessage, type Stored } from './helpers/queue.ts';

const BODY_API = fileURLToPath(new URL('./fixtures/body-api.ts', import.meta.url));
const INLINE_MAX = 4096;

/** A text body of exactly `n` bytes (n ≥ 4): CRLF lines, some starting with a dot. */
function textBody(n: number): Buffer {
  const out = Buffer.alloc(n, 'a');
  for (let i = 60; i < n - 4; i += 62) out.write('\r\n', i, 'latin1');
  for (let i = 62 * 3; i < n - 2; i += 62 * 7) out.write('.', i, 'latin1'); // lines that need dot-stuffing
  out.write('\r\n', n - 2, 'latin1');
  return out;
}

/** `n` random bytes (about), as CRLF lines with no bare CR or LF: any byte 0x00-0xff except CR and LF. */
function randomBody(n: number): Buffer {
  const out = randomBytes(n);
  for (let i = 0; i < n; i++) if (out[i] === 0x0d || out[i] === 0x0a) out[i] = 0x20;
  out[0] = 0x41; // not a header continuation
  for (let i = 997; i < n - 4; i += 998) out.write('\r\n', i, 'latin1');
  out.write('\r\n', n - 2, 'latin1');
  return out;
}

async function sendAndStore(server: TestServer, body: Buffer, to = 'b@localhost'): Promise<Stored> {
  const c = await RawClient.ready(server.port);
  const id = queuedId(await c.send('s@example.org', [to], dotStuffBytes(body)));
  await c.quit();
  return (await storedMessage(server.store, id))!;
}

function assertExact(stored: Stored, body: Buffer, queueDir: string): void {
  const rest = afterTraceHeaders(stored.bytes);
  assert.equal(rest.length, body.length, 'stored body length');
  assert.ok(rest.equals(body), 'stored body is byte-exact (after dot-unstuffing)');
  assert.equal(stored.record.msg.size, stored.bytes.length, 'record size = stored bytes');
  assert.ok(stored.record.msg.textFile.startsWith(join(queueDir, 'spool') + sep), 'textFile is under <queue>/spool/');
  assert.equal(bareLineEnds(stored.bytes), 0);
}

describe('storage either side of inlineMax (4096)', () => {
  let server: TestServer;
  let header = 0;
  before(async () => {
    server = await startTestServer({ inlineMax: INLINE_MAX });
    // the trace header's length, measured (its date and id make it vary only between servers and days)
    const probe = await sendAndStore(server, textBody(100));
    header = probe.bytes.length - 100;
    assert.ok(header > 50 && header < 400, `trace header length ${header}`);
  });
  after(async () => { await server.stop(); });

  const cases: Array<[string, (h: number) => number, 'inline' | 'file']> = [
    ['threshold - header - 1 (inline)', (h) => INLINE_MAX - h - 1, 'inline'],
    ['exactly the threshold (inline)', (h) => INLINE_MAX - h, 'inline'],
    ['threshold + 1 (file)', (h) => INLINE_MAX - h + 1, 'file'],
    ['3 × threshold (file)', () => 3 * INLINE_MAX, 'file'],
  ];
  for (const [name, size, storage] of cases) {
    it(`${name}: stored byte-exact, storage '${storage}'`, async () => {
      const body = textBody(size(header));
      const stored = await sendAndStore(server, body);
      assertExact(stored, body, server.queueDir);
      assert.equal(stored.record.storage, storage);
      assert.equal(stored.record.storage === 'inline', stored.bytes.length <= INLINE_MAX);
      const file = stored.record.msg.textFile;
      if (storage === 'file') {
        assert.ok((await readFile(file)).equals(stored.bytes), 'the spool file holds the stored bytes');
        assert.equal(server.store.getInlineBody(stored.record.msg.id), undefined, 'no inline copy');
      } else {
        assert.equal(existsSync(file), false, 'an inline message has no spool file');
      }
    });
  }

  it('~2 MiB of random bytes (every byte but CR/LF, CRLF lines) is stored byte-exact in a file', async () => {
    const body = randomBody(2 * 1024 * 1024 + 123);
    const stored = await sendAndStore(server, body);
    assertExact(stored, body, server.queueDir);
    assert.equal(stored.record.storage, 'file');
  });

  it('a spool that cannot be written gives 451 4.3.0 (not a hang), nothing queued; the session goes on', async () => {
    const spool = join(server.queueDir, 'spool');
    const count = server.store.count();
    const c = await RawClient.ready(server.port);
    await rename(spool, `${spool}.away`);
    await writeFile(spool, 'a file where the spool directory should be: opening a spool file fails (ENOTDIR)');
    try {
      await c.envelope('s@example.org', ['b@localhost']);
      assert.equal((await c.command('DATA')).code, 354);
      // one burst, so the body stream is paused for the file's back-pressure when the open fails
      c.write(Buffer.concat([textBody(2 * 1024 * 1024), Buffer.from('.\r\n')]));
      const reply = await c.read(15_000);
      assert.match(reply.text, /^451 4\.3\.0 /);
    } finally {
      await rm(spool);
      await rename(`${spool}.away`, spool);
    }
    assert.equal(server.store.count(), count);
    const body = textBody(3 * INLINE_MAX);
    const id = queuedId(await c.send('s@example.org', ['b@localhost'], dotStuffBytes(body)));
    await c.quit();
    assertExact((await storedMessage(server.store, id))!, body, server.queueDir);
  });

  it('random bytes just under the threshold are stored inline, byte-exact', async () => {
    const body = randomBody(INLINE_MAX - header - 10);
    const stored = await sendAndStore(server, body);
    assertExact(stored, body, server.queueDir);
    assert.equal(stored.record.storage, 'inline');
  });
});

describe('body API in predeliver (buffer, stream, path agree)', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer({ receiverPath: BODY_API, inlineMax: INLINE_MAX }); });
  after(async () => { await server.stop(); });

  for (const [name, size, storage] of [['inline', 1000, 'inline'], ['spooled', 3 * INLINE_MAX, 'file']] as const) {
    it(`${name} body: predeliver sees the same bytes three ways (250 only if so)`, async () => {
      const body = randomBody(size);
      const stored = await sendAndStore(server, body);
      assert.equal(stored.record.storage, storage);
      assertExact(stored, body, server.queueDir);
    });
  }

  it('~2 MiB spooled body: the three views agree', async () => {
    const stored = await sendAndStore(server, randomBody(2 * 1024 * 1024));
    assert.equal(stored.record.storage, 'file');
  });

  it('a rejection after path() leaves nothing in the spool (inline and spooled)', async () => {
    const count = server.store.count();
    const files = (await spoolFiles(server.queueDir)).sort();
    for (const size of [500, 3 * INLINE_MAX]) {
      const c = await RawClient.ready(server.port);
      const reply = await c.send('s@example.org', ['path-then-reject@localhost'], dotStuffBytes(randomBody(size)));
      await c.quit();
      assert.equal(reply.text, '550 5.7.1 rejected after path()');
    }
    assert.equal(server.store.count(), count);
    assert.deepEqual((await spoolFiles(server.queueDir)).sort(), files, 'no file of a rejected message is left');
  });
});
