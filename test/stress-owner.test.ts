/**
 * Stress, bounded (about 30 s): serve receives from 16 sessions while its
 * deliveries fail and are retried, 4 other processes run showqueue --json,
 * flush, hold ALL and release ALL in loops, and serve is SIGKILLed and started
 * again once. Afterwards every message that got a 250 is in the queue, byte for
 * byte, and no LMDB error (nor any error) was logged. Before the queue had one
 * owner, other processes opening the LMDB environment lost acknowledged
 * commits and corrupted its free list.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { freePort } from '../bench/targets.ts';
import { CliProcess, REPO_ROOT, spawnCli } from './helpers/cli.ts';
import { ownQueue } from './helpers/owned.ts';
import { afterTraceHeaders, storedMessage } from './helpers/queue.ts';
import { RawClient, dotStuff } from './helpers/smtp.ts';

const DEFER = new URL('./fixtures/always-defer.ts', import.meta.url).pathname;
const TOOL = new URL('./fixtures/tool-loop.ts', import.meta.url).pathname;
const SESSIONS = 16;
const PHASE_MS = 11_000;
const MAX_MESSAGES = 20_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function body(token: string): Buffer {
  const lines = [`Message-ID: <${token}@stress.test>`, `Subject: stress ${token}`, ''];
  const size = 300 + ((token.length * 7919 + Number(token.replace(/\D/g, '').slice(-4) || 0) * 131) % 5700);
  for (let i = 0, n = 80; n < size; i++) {
    const line = `${i % 9 === 0 ? '.' : ''}${token} ${i} ${'0123456789abcdefghijklmnopqrstuvwxyz'.slice(i % 36)}`;
    lines.push(line);
    n += line.length + 2;
  }
  lines.push('');
  return Buffer.from(lines.join('\r\n'), 'latin1');
}

describe('one owner under stress', () => {
  it('16 sessions, failing deliveries, 4 queue-command loops and a SIGKILL: every 250 is queued byte-exact, no LMDB error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-stress-'));
    const queue = join(dir, 'queue');
    const port = await freePort();
    const args = ['serve', '--listen', `127.0.0.1:${port}`, '--queue', queue, '--no-reverse-dns', '--receiver', DEFER,
      '--workers', '2', '--inline-max', '2048', '--retry-min', '100', '--retry-max', '400', '--hostname', 'stress.test', '--lock-wait', '60000'];
    const serves: CliProcess[] = [];
    const tools: CliProcess[] = [];
    try {
      serves.push(spawnCli(args));
      await serves[0]!.ready(30_000);

      const acked = new Map<string, Buffer>();
      let started = 0;
      let stop = false;
      const deadline = Date.now() + 2 * PHASE_MS + 30_000; // hard bound, whatever happens
      const session = async (si: number): Promise<void> => {
        for (let attempt = 0; !stop && Date.now() < deadline && attempt < 1000; attempt++) {
          let c: RawClient | undefined;
          try {
            c = await RawClient.ready(port, `s${si}.test`);
            while (!stop && Date.now() < deadline && started < MAX_MESSAGES) {
              const token = `s${si}m${started++}`;
              const bytes = body(token);
              for (const r of await c.envelope(`from${si}@example.org`, [`to${si}@localhost`])) {
                if (r.code !== 250) throw new Error(`envelope: ${r.text}`);
              }
              if ((await c.command('DATA')).code !== 354) throw new Error('DATA refused');
              c.write(Buffer.from(`${dotStuff(bytes.toString('latin1'))}.\r\n`, 'latin1'));
              const reply = await c.read(30_000);
              const m = /queued as ([0-9A-Z]+)/.exec(reply.text);
              if (reply.code !== 250 || !m) throw new Error(`end of DATA: ${reply.text}`);
              acked.set(m[1]!, bytes);
            }
          } catch {
            await sleep(50); // the daemon was killed (or is restarting): connect again
          } finally {
            c?.socket.destroy();
          }
        }
      };
      const sessions = Promise.all(Array.from({ length: SESSIONS }, (_, i) => session(i)));

      const toolSeconds = String(Math.round((2 * PHASE_MS) / 1000) + 2);
      for (const op of ['showqueue', 'flush', 'hold', 'release']) {
        tools.push(new CliProcess(spawn(process.execPath, ['--import', 'tsx', TOOL, op, queue, toolSeconds], {
          cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
        })));
      }

      await sleep(PHASE_MS);
      const beforeKill = acked.size;
      assert.equal((await serves[0]!.signal('SIGKILL')).signal, 'SIGKILL');
      serves.push(spawnCli(args));
      await serves[1]!.ready(60_000);
      await sleep(PHASE_MS);
      stop = true;
      await sessions;
      const toolResults = [];
      for (const t of tools) {
        assert.equal((await t.waitExit(60_000)).code, 0, t.stderr);
        toolResults.push(JSON.parse(t.stdout) as { op: string; runs: number; gone: number; failures: number; first: string[] });
      }
      assert.equal((await serves[1]!.signal('SIGTERM', 60_000)).code, 0, serves[1]!.stderr);

      assert.ok(beforeKill >= 50 && acked.size - beforeKill >= 50, `messages acknowledged before (${beforeKill}) and after the kill (${acked.size - beforeKill})`);
      for (const r of toolResults) {
        assert.equal(r.failures, 0, `${r.op}: ${r.first.join(' | ')}`);
        assert.ok(r.gone <= 1, `${r.op}: ${r.gone} requests cut short by the one kill`);
        assert.ok(r.runs >= 3, `${r.op} ran ${r.runs} times`);
      }
      for (const [i, s] of serves.entries()) {
        assert.doesNotMatch(s.stderr, /MDB_|mdb_|lmdb|freelist|assertion/i, `serve #${i + 1} logged an LMDB error`);
        assert.doesNotMatch(s.stderr, /^\S+ (error|fatal) /m, `serve #${i + 1} logged an error:\n${s.stderr.slice(0, 4000)}`);
      }

      const owned = await ownQueue(queue);
      try {
        let attempted = 0;
        for (const [id, bytes] of acked) {
          const stored = await storedMessage(owned.store, id);
          assert.ok(stored, `${id} got a 250 and is not in the queue`);
          assert.ok(afterTraceHeaders(stored.bytes).equals(bytes), `${id}: stored bytes differ from what was sent`);
          if (stored.record.attempts > 0) attempted++;
        }
        assert.ok(attempted > 0, 'deliveries were attempted (and failed) meanwhile');
      } finally {
        await owned.close();
      }
    } finally {
      for (const p of [...tools, ...serves]) await p.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
