/**
 * The one promise, tested by killing a real process: a 250 after DATA means
 * the message is on stable storage. Load the daemon from 8 raw connections,
 * SIGKILL it mid-load (one client is held inside DATA, others are anywhere),
 * restart it on the same queue, and compare the queue with what was sent.
 */
import assert from 'node:assert/strict';
import { mkdtemp, open, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { spoolDir } from '../src/core/spool.ts';
import type { QueueStore } from '../src/core/store.ts';
import { spawnCli, type CliProcess } from './helpers/cli.ts';
import { ownQueue } from './helpers/owned.ts';
import { afterTraceHeaders, storedMessage } from './helpers/queue.ts';
import { RawClient, dotStuff } from './helpers/smtp.ts';

const KEEP = new URL('./fixtures/keep-queued.ts', import.meta.url).pathname;
const CLIENTS = 8;
const HELD = 1; // the client that is held inside DATA when the kill comes
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Sent {
  token: string;
  /** The message as the client meant it (before dot-stuffing). */
  body: Buffer;
  /** partial: the end of DATA was not written; sent: written, no reply yet; confirmed: 250; refused: other reply. */
  state: 'partial' | 'sent' | 'confirmed' | 'refused';
  id?: string;
}

interface Scenario {
  name: string;
  inlineMax: number;
  size: () => number;
  killAfter: number;
  maxMessages: number;
  storage: 'inline' | 'file';
}

function makeBody(token: string, size: number): Buffer {
  const lines = [`Message-ID: <${token}@crash.test>`, `X-Crash-Token: ${token}`, `Subject: crash test ${token}`, ''];
  let n = 100;
  for (let i = 0; n < size; i++) {
    // every 7th line starts with a dot, so dot-stuffing is part of what must survive
    const line = `${i % 7 === 0 ? '.' : ''}${token} line ${i} ${'abcdefghijklmnopqrstuvwxyz0123456789'.slice(i % 36)}${'-'.repeat(i % 50)}`;
    lines.push(line);
    n += line.length + 2;
  }
  lines.push(`.end of ${token}`, '');
  return Buffer.from(lines.join('\r\n'), 'latin1');
}

/** Cuts `wire` into `parts` pieces at random places (each at least one byte). */
function pieces(wire: Buffer, parts: number): Buffer[] {
  const cuts = new Set<number>();
  while (cuts.size < parts - 1) cuts.add(1 + Math.floor(Math.random() * (wire.length - 1)));
  const sorted = [0, ...[...cuts].sort((a, b) => a - b), wire.length];
  return sorted.slice(1).map((end, i) => wire.subarray(sorted[i]!, end));
}

/** Spool files whose name is not a queued message's id (a file record's spool file). */
function orphansIn(files: string[], store: QueueStore): string[] {
  return files.filter((f) => {
    const id = f.replace(/\.eml$/, '');
    return store.get(id)?.storage !== 'file';
  });
}

async function heldFileExists(queueDir: string, token: string): Promise<boolean> {
  for (const name of await readdir(spoolDir(queueDir)).catch(() => [] as string[])) {
    const fh = await open(join(spoolDir(queueDir), name), 'r').catch(() => undefined);
    if (!fh) continue;
    try {
      const { buffer, bytesRead } = await fh.read(Buffer.alloc(2048), 0, 2048, 0);
      if (buffer.subarray(0, bytesRead).includes(`X-Crash-Token: ${token}\r\n`)) return true;
    } finally {
      await fh.close();
    }
  }
  return false;
}

async function runScenario(t: TestContext, s: Scenario): Promise<void> {
  const queueDir = await mkdtemp(join(tmpdir(), 'smtp-receive-crash-'));
  // a receiver without deliver(): the comparison needs every 250'd message still queued after the restart
  const args = ['serve', '--receiver', KEEP, '--listen', '127.0.0.1:0', '--queue', queueDir, '--no-reverse-dns',
    '--inline-max', String(s.inlineMax), '--workers', '1', '--hostname', 'crash.test'];
  const procs: CliProcess[] = [];
  try {
    const first = spawnCli(args);
    procs.push(first);
    const { port } = await first.ready();

    const sent = new Map<string, Sent>();
    let confirmed = 0;
    let started = 0;
    let stopped = false;
    let holdRequested = false;
    let reachedHold!: (token: string) => void;
    const heldToken = new Promise<string>((r) => { reachedHold = r; });
    let releaseHeld!: () => void;
    const killed = new Promise<void>((r) => { releaseHeld = r; });
    const deadline = Date.now() + 10_000;

    const client = async (ci: number): Promise<void> => {
      const chunked = ci % 2 === 1; // half the clients write DATA in pieces with pauses
      let c: RawClient;
      try {
        c = await RawClient.ready(port, `client${ci}.test`);
      } catch {
        return;
      }
      try {
        // bounded in count and time; the held client goes on (once) until it is held
        const more = (): boolean => !stopped && ((started < s.maxMessages && Date.now() < deadline) || (ci === HELD && holdRequested));
        for (let seq = 0; more(); seq++) {
          started++;
          const token = `c${ci}-m${seq}`;
          const msg: Sent = { token, body: makeBody(token, s.size()), state: 'partial' };
          sent.set(token, msg);
          for (const r of await c.envelope(`sender${ci}@example.org`, [`user${ci}@localhost`])) {
            if (r.code !== 250) throw new Error(`envelope: ${r.text}`);
          }
          const r354 = await c.command('DATA');
          if (r354.code !== 354) throw new Error(`DATA: ${r354.text}`);
          const wire = Buffer.from(`${dotStuff(msg.body.toString('latin1'))}.\r\n`, 'latin1');
          if (ci === HELD && holdRequested) {
            // most of the message, never its end: this one must not be in the queue
            c.write(wire.subarray(0, Math.floor(wire.length * 0.6)));
            reachedHold(token);
            await killed;
            return;
          }
          const parts = chunked ? pieces(wire, 4) : [wire];
          for (let i = 0; i < parts.length; i++) {
            if (i === parts.length - 1) msg.state = 'sent'; // from here on the server may see the end of DATA
            c.write(parts[i]!);
            if (i < parts.length - 1) await sleep(1 + (i % 3));
          }
          const reply = await c.read(30_000);
          const m = /queued as ([0-9A-Z]+)/.exec(reply.text);
          if (reply.code === 250 && m) {
            msg.state = 'confirmed';
            msg.id = m[1];
            confirmed++;
          } else {
            msg.state = 'refused';
            throw new Error(`end of DATA: ${reply.text}`);
          }
        }
      } catch (err) {
        // after the kill every connection fails; before it, nothing should
        if (!stopped) throw err;
      } finally {
        c.socket.destroy();
      }
    };

    const clients = Array.from({ length: CLIENTS }, (_, ci) => client(ci));
    const clientsDone = Promise.all(clients);
    clientsDone.catch(() => {}); // inspected below

    // Kill when enough 250s have arrived and one client sits inside DATA (bounded).
    while (confirmed < s.killAfter && Date.now() < deadline && !first.hasExited) await sleep(5);
    holdRequested = true;
    let holdTimer: NodeJS.Timeout | undefined;
    const token = await Promise.race([heldToken, new Promise<undefined>((r) => { holdTimer = setTimeout(() => r(undefined), 10_000); })]);
    clearTimeout(holdTimer);
    assert.ok(token, 'the held client reached the middle of DATA');
    if (s.storage === 'file') {
      // wait (bounded) until the held message's spool file exists, so the kill leaves an orphan
      for (let i = 0; i < 500 && !(await heldFileExists(queueDir, token)); i++) await sleep(10);
    }
    stopped = true;
    const killExit = await first.signal('SIGKILL');
    releaseHeld();
    assert.equal(killExit.signal, 'SIGKILL');
    await clientsDone; // a client that failed before the kill fails the test here

    const all = [...sent.values()];
    const count = (state: Sent['state']): number => all.filter((m) => m.state === state).length;
    assert.ok(confirmed >= 20, `enough messages got a 250 before the kill (${confirmed})`);
    assert.equal(count('refused'), 0, 'no message was refused before the kill');
    assert.equal(sent.get(token)!.state, 'partial');

    // Straight after the crash (before any clean-up): what is on disk. The killed daemon's
    // lock went with it; we own the queue until the restart (which needs the lock).
    const before = await ownQueue(queueDir);
    let orphansBefore: string[];
    try {
      for (const m of all) if (m.state === 'confirmed') assert.ok(before.store.has(m.id!), `${m.id} (${m.token}) is queued after the crash`);
      orphansBefore = orphansIn(await readdir(spoolDir(queueDir)), before.store);
    } finally {
      await before.close();
    }
    if (s.storage === 'file') assert.ok(orphansBefore.length >= 1, 'the kill left at least one spool file without a record');

    // Restart on the same queue: start-up removes the orphans; then stop cleanly.
    const second = spawnCli(args);
    procs.push(second);
    await second.ready();
    if (orphansBefore.length > 0) {
      assert.match(second.stderr, new RegExp(`removed ${orphansBefore.length} spool file\\(s\\) left without a record`));
    }
    const stopExit = await second.signal('SIGTERM');
    assert.deepEqual(stopExit, { code: 0, signal: null }, `clean stop after restart; stderr:\n${second.stderr}`);

    // the daemon has exited: the queue is ours to inspect
    const owned = await ownQueue(queueDir);
    const { store } = owned;
    try {
      // every 250 is there, byte-exact after the trace headers
      for (const m of all) {
        if (m.state !== 'confirmed') continue;
        const stored = await storedMessage(store, m.id!);
        assert.ok(stored, `${m.id} (${m.token}) got a 250 and is in the queue`);
        assert.equal(stored.record.storage, s.storage, `${m.id} storage`);
        assert.ok(afterTraceHeaders(stored.bytes).equals(m.body), `${m.id} (${m.token}) is stored byte-exact`);
      }
      // everything queued is a message some client sent in full: confirmed, or its 250 was in flight
      const seen = new Set<string>();
      let inFlightKept = 0;
      for (const id of store.ids()) {
        const stored = (await storedMessage(store, id))!;
        const body = afterTraceHeaders(stored.bytes);
        const token = /^X-Crash-Token: (\S+)\r$/m.exec(body.toString('latin1'))?.[1];
        const m = token === undefined ? undefined : sent.get(token);
        assert.ok(m, `queued ${id} is a message a client sent`);
        assert.ok(!seen.has(m.token), `${m.token} is queued once`);
        seen.add(m.token);
        assert.ok(m.state === 'confirmed' || m.state === 'sent', `queued ${id} (${m.token}) was sent in full (state ${m.state})`);
        if (m.state === 'confirmed') assert.equal(id, m.id);
        else inFlightKept++;
        assert.ok(body.equals(m.body), `queued ${id} (${m.token}) is not truncated or altered (${body.length} vs ${m.body.length} bytes)`);
      }
      // no spool file without a record, and no file record without its file
      const files = await readdir(spoolDir(queueDir));
      assert.deepEqual(orphansIn(files, store), [], 'no spool file is left without a record');
      const fileRecords = [...store.ids()].filter((id) => store.get(id)!.storage === 'file');
      assert.deepEqual(files.map((f) => f.replace(/\.eml$/, '')).sort(), fileRecords.sort());
      t.diagnostic(`${s.name}: sent ${all.length}, 250s ${confirmed}, in flight ${count('sent')} (${inFlightKept} kept), `
        + `partial ${count('partial')}, orphan spool files after the kill ${orphansBefore.length}, queued ${store.count()}`);
    } finally {
      await owned.close();
    }
  } finally {
    for (const p of procs) await p.kill();
    await rm(queueDir, { recursive: true, force: true });
  }
}

describe('crash durability (SIGKILL of a real daemon)', () => {
  it('small messages (stored inline in LMDB): every 250 survives, nothing partial does', async (t) => {
    await runScenario(t, {
      name: 'inline', inlineMax: 131072, storage: 'inline', killAfter: 100, maxMessages: 400,
      size: () => 200 + Math.floor(Math.random() * 3000),
    });
  });

  it('large messages (spool files): every 250 survives, orphan files are removed at start-up', async (t) => {
    await runScenario(t, {
      name: 'file', inlineMax: 65536, storage: 'file', killAfter: 100, maxMessages: 400,
      size: () => 200 * 1024 + Math.floor(Math.random() * 200 * 1024),
    });
  });
});
