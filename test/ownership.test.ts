/**
 * One owner of the queue: only the process holding the queue's lock opens its
 * LMDB environment. Real daemons, killed and restarted; other processes that
 * try to open the queue; a queue command that holds it while serve starts;
 * leases of a killed daemon taken back at once by the next.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { CliProcess, REPO_ROOT, runCli, spawnCli } from './helpers/cli.ts';
import { until } from './helpers/queue.ts';

const OPENER = new URL('./fixtures/queue-opener.ts', import.meta.url).pathname;
const HANG = new URL('./fixtures/hang-first-run.ts', import.meta.url).pathname;

let tmp: string;
before(async () => { tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-owner-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

const KEEP = new URL('./fixtures/keep-queued.ts', import.meta.url).pathname;
// without a --receiver of its own, a receiver without deliver(): the tests count what stays queued
const serveArgs = (queue: string, ...extra: string[]): string[] =>
  ['serve', '--listen', '127.0.0.1:0', '--queue', queue, '--no-reverse-dns', '--workers', '1',
    ...(extra.includes('--receiver') ? [] : ['--receiver', KEEP]), ...extra];

interface OpenerResult { unlocked: string; lock: boolean; owner?: { pid: number; role: string }; opened?: boolean; messages?: number }

function startOpener(queue: string, holdMs?: number): CliProcess {
  return new CliProcess(spawn(process.execPath, ['--import', 'tsx', OPENER, queue, ...(holdMs ? [String(holdMs)] : [])], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
  }));
}

async function opener(queue: string): Promise<OpenerResult> {
  const p = startOpener(queue);
  const exit = await p.waitExit(30_000);
  assert.equal(exit.code, 0, p.stderr);
  return JSON.parse(p.stdout) as OpenerResult;
}

async function send(port: number, n: number): Promise<string[]> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const info = await t.sendMail({ from: 'a@example.org', to: 'bob@localhost', subject: `owner ${i}`, text: `message ${i}\n` });
      ids.push(/queued as ([0-9A-Z]+)/.exec(info.response)![1]!);
    }
    return ids;
  } finally {
    t.close();
  }
}

const jsonLines = (stdout: string): Array<Record<string, unknown>> =>
  stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('one owner of the queue', () => {
  it('while serve runs, a second serve and a QueueStore.open from another process are refused; after it exits, both succeed', async () => {
    const queue = join(tmp, 'q1');
    const daemon = spawnCli(serveArgs(queue));
    try {
      const { port } = await daemon.ready();
      assert.equal(statSync(join(queue, 'control.sock')).mode & 0o777, 0o600, 'only the daemon\'s user may use the control socket');
      await send(port, 2);
      const second = await runCli(serveArgs(queue));
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, new RegExp(`queue ${queue} is in use by smtp-receive serve \\(pid ${daemon.pid}\\)`));
      assert.doesNotMatch(second.stderr, /waiting/); // refused at once, not after --lock-wait
      const o = await opener(queue);
      assert.deepEqual(o, { unlocked: 'refused', lock: false, owner: { pid: daemon.pid, role: 'serve' } });
      assert.equal((await daemon.signal('SIGTERM')).code, 0);
    } finally {
      await daemon.kill();
    }
    assert.ok(!existsSync(join(queue, 'control.sock')), 'a daemon that stops removes its socket');
    assert.deepEqual(await opener(queue), { unlocked: 'refused', lock: true, opened: true, messages: 2 });
    const third = spawnCli(serveArgs(queue));
    try {
      await third.ready();
    } finally {
      await third.kill();
    }
  });

  it('--control-group opens the control socket to a group (mode 0660); an unknown group is refused by name', async () => {
    const queue = join(tmp, 'q5');
    const gid = process.getgid!();
    const daemon = spawnCli(serveArgs(queue, '--control-group', String(gid)));
    try {
      await daemon.ready();
      const st = statSync(join(queue, 'control.sock'));
      assert.equal(st.mode & 0o777, 0o660);
      assert.equal(st.gid, gid);
    } finally {
      await daemon.kill();
    }
    const bad = await runCli(serveArgs(queue, '--control-group', 'no-such-group-here'));
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--control-group: no group named "no-such-group-here"/);
    assert.ok(!existsSync(join(queue, 'control.sock')));
    assert.equal((await opener(queue)).lock, true, 'the refused daemon gave the queue up');
  });

  it('after a SIGKILL the lock is free and the stale socket neither blocks the next serve nor confuses a command', async () => {
    const queue = join(tmp, 'q2');
    const daemon = spawnCli(serveArgs(queue));
    let ids: string[];
    try {
      ids = await send((await daemon.ready()).port, 3);
      assert.equal((await daemon.signal('SIGKILL')).signal, 'SIGKILL');
    } finally {
      await daemon.kill();
    }
    assert.ok(existsSync(join(queue, 'control.sock')), 'the killed daemon left its socket file behind');
    const offline = await runCli(['showqueue', '--queue', queue, '--json']);
    assert.equal(offline.code, 0, offline.stderr);
    assert.deepEqual(jsonLines(offline.stdout).map((m) => m.queue_id), ids);
    const o = await opener(queue);
    assert.equal(o.lock, true);
    assert.equal(o.messages, 3);

    const next = spawnCli(serveArgs(queue));
    try {
      await next.ready();
      const online = await runCli(['showqueue', '--queue', queue, '--json']);
      assert.equal(online.code, 0, online.stderr);
      assert.deepEqual(jsonLines(online.stdout).map((m) => m.queue_id), ids);
      assert.equal((await opener(queue)).lock, false);
    } finally {
      await next.kill();
    }
  });

  it('serve waits for a queue command that holds the queue, up to --lock-wait, and says so', async () => {
    const queue = join(tmp, 'q3');
    const first = spawnCli(serveArgs(queue)); // creates the queue
    await first.ready();
    await first.kill();

    // held until the test lets it go (a fixed hold ran out before a slow machine started the waiting serve)
    const holder = startOpener(queue, 120_000);
    try {
      await until(() => holder.stdout.includes('"lock":true'), 'the opener holding the queue', 20_000);
      const impatient = await runCli(serveArgs(queue, '--lock-wait', '200'));
      assert.equal(impatient.code, 1, impatient.stderr);
      assert.match(impatient.stderr, new RegExp(`is in use by smtp-receive runqueue \\(pid ${holder.pid}\\) \\(waited 200 ms\\)`));

      const patient = spawnCli(serveArgs(queue, '--lock-wait', '60000'));
      try {
        const waiting = new RegExp(`in use by smtp-receive runqueue \\(pid ${holder.pid}\\); waiting up to 60000 ms`);
        await until(() => waiting.test(patient.stderr), 'serve to say it waits', 40_000);
        assert.ok(!patient.stdout.includes('listening on'), 'not listening while the command holds the queue');
        await holder.kill(); // the command ends: the queue is free
        await patient.ready(40_000);
      } finally {
        await patient.kill();
      }
    } finally {
      await holder.kill();
    }
  });

  it('leases of a SIGKILLed daemon are retried at once by the next one, not after the lease runs out', async () => {
    const queue = join(tmp, 'q4');
    const mark = join(tmp, 'q4-delivering');
    const log = join(tmp, 'q4-delivered');
    // a lease lasts --deliver-timeout + 60 s: 11 minutes here
    const args = serveArgs(queue, '--receiver', HANG, '--deliver-timeout', '600000');
    const first = spawnCli(args, { HANG_MARK: mark });
    let id: string;
    try {
      [id] = await send((await first.ready()).port, 1) as [string];
      await until(() => existsSync(mark), 'deliver to start', 20_000);
      const listed = await runCli(['showqueue', '--queue', queue, '--json']);
      assert.equal(jsonLines(listed.stdout)[0]!.queue_name, 'active');
      await first.signal('SIGKILL');
    } finally {
      await first.kill();
    }
    const second = spawnCli(args, { DELIVER_LOG: log });
    try {
      await second.ready();
      await until(() => existsSync(log) && readFileSync(log, 'utf8').includes(id), 'the restarted daemon to deliver it', 30_000);
      assert.match(second.stderr, /1 message\(s\) leased by a previous owner are due again now/);
      await until(async () => (await runCli(['showqueue', '--queue', queue])).stdout === 'Mail queue is empty\n', 'the queue to empty', 20_000);
    } finally {
      await second.kill();
    }
  });
});
