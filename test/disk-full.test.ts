/**
 * A full disk: the queue lives on a 3 MiB tmpfs (mounted by the test; needs
 * root, as CI is — skipped elsewhere). Spooled and inline messages are sent
 * until storage runs out: the client gets a 4xx, the process keeps serving,
 * nothing that got a 250 is lost, and once space is freed mail is accepted again.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deleteMessages } from '../src/core/queue-ops.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { afterTraceHeaders, storedMessage } from './helpers/queue.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

function tryMount(dir: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('disk full', () => {
  let dir: string;
  let mounted = false;
  let server: TestServer | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'smtp-receive-full-'));
    mounted = tryMount(dir);
  });
  after(async () => {
    await server?.stop();
    if (mounted) execFileSync('umount', [dir]);
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 4xx when storage runs out, loses nothing, and recovers', async (t) => {
    if (!mounted) return t.skip('cannot mount a tmpfs here (needs root)');
    server = await startTestServer({ queueDir: join(dir, 'queue'), inlineMax: 65536 });
    const s = server;
    const sent = new Map<string, string>();
    const send = async (body: string): Promise<{ code: number; text: string }> => {
      const c = await RawClient.ready(s.port);
      try {
        const r = await c.send('a@example.org', ['u@localhost'], body);
        if (r.code === 250) sent.set(queuedId(r), body);
        return r;
      } finally {
        await c.quit();
      }
    };
    const big = (i: number): string => `Subject: big ${i}\r\n\r\n${`${'x'.repeat(998)}\r\n`.repeat(300)}`;
    const small = (i: number): string => `Subject: small ${i}\r\n\r\n${`${'y'.repeat(98)}\r\n`.repeat(20)}`;

    let refusal: { code: number; text: string } | undefined;
    for (let i = 0; i < 50 && !refusal; i++) {
      const r = await send(big(i));
      if (r.code !== 250) refusal = r;
    }
    assert.ok(refusal, 'a spooled message was refused once the disk filled');
    assert.match(refusal.text, /^452 4\.3\.1 /);

    refusal = undefined;
    for (let i = 0; i < 3000 && !refusal; i++) {
      const r = await send(small(i));
      if (r.code !== 250) refusal = r;
    }
    assert.ok(refusal, 'an inline message was refused once LMDB could not grow');
    assert.match(refusal.text, /^45[12] 4\.3\.[01] /);

    // still serving, and every 250'd message is there, byte-exact
    (await RawClient.greeted(s.port)).socket.destroy();
    for (const [id, body] of sent) {
      const stored = await storedMessage(s.store, id);
      assert.ok(stored, `${id} is queued`);
      assert.equal(afterTraceHeaders(stored.bytes).toString('latin1'), body);
    }
    const spooled = [...sent.keys()].filter((id) => s.store.get(id)!.storage === 'file');
    const files = (await readdir(join(s.queueDir, 'spool'))).filter((f) => f.endsWith('.eml'));
    assert.deepEqual(files.sort(), spooled.map((id) => `${id}.eml`).sort(), 'no spool file without a record');

    // free space: delete the spooled messages; mail is accepted again
    const r = await deleteMessages(s.store, spooled);
    assert.equal(r.changed.length, spooled.length);
    for (const id of spooled) sent.delete(id);
    const again = await send(small(9999));
    assert.equal(again.code, 250, again.text);
    assert.equal(s.store.count(), sent.size);
  });
});
