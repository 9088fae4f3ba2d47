/**
 * `smtp-receive showqueue` through the real CLI: the --json round trip (what was
 * queued over SMTP is what is listed, spool path included, and with --bodies the
 * exact stored bytes, inline or spooled), given ids, errors and exit codes, the
 * text listing, and a listing of thousands of messages streamed through a pipe.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestServer } from '../src/testing.ts';
import { runCli } from './helpers/cli.ts';
import { enqueueTest } from './helpers/enqueue.ts';
import { ownQueue } from './helpers/owned.ts';
import { afterTraceHeaders, storedMessage } from './helpers/queue.ts';
import { RawClient, dotStuff, queuedId } from './helpers/smtp.ts';

interface JsonLine {
  queue_name: string;
  queue_id: string;
  arrival_time: number;
  message_size: number;
  forced_expire: boolean;
  sender: string;
  recipients: Array<{ address: string; delay_reason?: string }>;
  path: string | null;
  attempts: number;
  next_attempt: number | null;
  error: string | null;
  helo: string;
  peer_addr: string;
  body_b64?: string;
}

const FIELDS = ['queue_name', 'queue_id', 'arrival_time', 'message_size', 'forced_expire', 'sender', 'recipients', 'path',
  'attempts', 'next_attempt', 'error', 'helo', 'peer_addr'];

function jsonLines(stdout: string): JsonLine[] {
  assert.ok(stdout === '' || stdout.endsWith('\n'), 'output ends with a newline');
  return stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as JsonLine);
}

interface Sent {
  id: string;
  from: string;
  to: string[];
  body: string;
  before: number;
  after: number;
}

const INLINE_MAX = 2048;
let tmp: string;
let dir: string;
const sent: Sent[] = [];

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-showqueue-'));
  dir = join(tmp, 'queue');
  const server = await startTestServer({ queueDir: dir, inlineMax: INLINE_MAX });
  try {
    const messages: Array<Omit<Sent, 'id' | 'before' | 'after'>> = [
      { from: 'alice@example.org', to: ['bob@localhost'], body: 'Subject: small\r\n\r\nhello\r\n.dot line\r\n' },
      {
        from: '', to: ['carol@localhost', 'dave@localhost'],
        body: `Subject: big\r\n\r\n${'caf\u00e9 0123456789 abcdefghijklmnopqrstuvwxyz\r\n'.repeat(150)}`,
      },
      { from: 'erin@example.org', to: ['frank@localhost'], body: 'Subject: third\r\n\r\nbye\r\n' },
    ];
    for (const m of messages) {
      const c = await RawClient.ready(server.port);
      const before = Date.now();
      const reply = await c.send(m.from, m.to, dotStuff(m.body));
      const after = Date.now();
      await c.quit();
      sent.push({ ...m, id: queuedId(reply), before, after });
    }
  } finally {
    await server.stop();
  }
});
after(async () => { await rm(tmp, { recursive: true, force: true }); });

describe('showqueue --json --bodies: round trip of messages queued over SMTP', () => {
  it('lists each message as queued, with the spool path and the exact stored bytes', async () => {
    const r = await runCli(['showqueue', '--queue', dir, '--json', '--bodies']);
    assert.equal(r.code, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    assert.deepEqual(lines.map((l) => l.queue_id), sent.map((s) => s.id), 'one line per message, in arrival order');
    // no daemon (the server stopped in before()): open the queue as its owner, closed before the next command
    const { store, close } = await ownQueue(dir);
    try {
      const storages: string[] = [];
      for (const [i, line] of lines.entries()) {
        const s = sent[i]!;
        const stored = (await storedMessage(store, s.id))!;
        assert.ok(stored, `${s.id} is in the queue`);
        storages.push(stored.record.storage);
        assert.deepEqual(Object.keys(line), [...FIELDS, 'body_b64']);
        assert.equal(line.queue_name, 'incoming');
        assert.ok(line.arrival_time >= Math.floor(s.before / 1000) && line.arrival_time <= Math.floor(s.after / 1000),
          `arrival_time ${line.arrival_time} is in seconds, when it was sent`);
        assert.equal(line.message_size, stored.bytes.length);
        assert.equal(line.forced_expire, false);
        assert.equal(line.sender, s.from);
        assert.deepEqual(line.recipients, s.to.map((address) => ({ address })));
        if (stored.record.storage === 'file') {
          assert.equal(line.path, join(dir, 'spool', `${s.id}.eml`));
          assert.ok(existsSync(line.path!), 'the path is the spool file');
        } else {
          assert.equal(line.path, null);
        }
        assert.equal(line.attempts, 0);
        assert.equal(line.next_attempt, Math.floor(stored.record.nextAttempt / 1000));
        assert.equal(line.error, null);
        assert.equal(line.helo, 'client.test');
        assert.equal(line.peer_addr, '127.0.0.1');
        const body = Buffer.from(line.body_b64!, 'base64');
        assert.ok(body.equals(stored.bytes), `${s.id}: body_b64 is the stored bytes`);
        assert.equal(afterTraceHeaders(body).toString('utf8'), s.body, `${s.id}: the body sent, after our trace headers`);
      }
      assert.deepEqual(storages, ['inline', 'file', 'inline'], `one message above inlineMax (${INLINE_MAX}) is spooled`);
    } finally {
      await close();
    }
  });

  it('without --bodies there is no body_b64', async () => {
    const r = await runCli(['showqueue', '--queue', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    assert.equal(lines.length, sent.length);
    for (const l of lines) assert.deepEqual(Object.keys(l), FIELDS);
  });

  it('lists only the ids given', async () => {
    const r = await runCli(['showqueue', '--queue', dir, '--json', '--bodies', sent[2]!.id, sent[1]!.id]);
    assert.equal(r.code, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    assert.deepEqual(lines.map((l) => l.queue_id), [sent[2]!.id, sent[1]!.id]);
    assert.equal(Buffer.from(lines[1]!.body_b64!, 'base64').length, lines[1]!.message_size);
  });

  it('an unknown id: exit 1, a message naming it, the known ones still listed', async () => {
    const unknown = 'ZZZZZZZZZ0000AAAA';
    const r = await runCli(['showqueue', '--queue', dir, '--json', unknown, sent[0]!.id]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${unknown}: no such message`));
    assert.deepEqual(jsonLines(r.stdout).map((l) => l.queue_id), [sent[0]!.id]);
  });
});

describe('showqueue: usage errors exit 2', () => {
  it('--bodies without --json', async () => {
    const r = await runCli(['showqueue', '--queue', dir, '--bodies']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--bodies/);
    assert.equal(r.stdout, '');
  });

  it('a malformed id', async () => {
    const r = await runCli(['showqueue', '--queue', dir, '../etc/passwd']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /"\.\.\/etc\/passwd" is not a queue id/);
  });

  it('a directory that is not a queue: names --queue and the directory', async () => {
    const empty = await mkdtemp(join(tmp, 'not-a-queue-'));
    const r = await runCli(['showqueue', '--queue', empty]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--queue/);
    assert.ok(r.stderr.includes(empty), r.stderr);
    assert.ok(!existsSync(join(empty, 'db')), 'showqueue did not create a queue there');
  });
});

describe('showqueue: text listing', () => {
  it('one entry per message and a footer that counts them', async () => {
    const r = await runCli(['showqueue', '--queue', dir]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], '----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------');
    const rows = lines.filter((l) => /^[0-9A-Z]{17}[ *!] /.test(l));
    assert.deepEqual(rows.map((l) => l.slice(0, 17)), sent.map((s) => s.id));
    assert.match(rows[1]!, / MAILER-DAEMON$/, 'the null sender');
    for (const s of sent) for (const rcpt of s.to) assert.ok(lines.includes(`${' '.repeat(47)}${rcpt}`), rcpt);
    const { store, close } = await ownQueue(dir);
    let bytes = 0;
    try {
      for (const s of sent) bytes += store.get(s.id)!.msg.size;
    } finally {
      await close();
    }
    assert.ok(r.stdout.endsWith(`\n\n-- ${Math.floor(bytes / 1024)} Kbytes in ${sent.length} Requests.\n`), r.stdout.slice(-80));
  });
});

describe('showqueue: a large queue streams through a pipe', () => {
  const N = 3000;
  let big: string;
  const ids = new Set<string>();
  before(async () => {
    big = join(tmp, 'big');
    const { store, close } = await ownQueue(big);
    try {
      const time = Date.UTC(2024, 0, 1);
      for (let i = 0; i < N; i += 500) {
        const batch = Array.from({ length: Math.min(500, N - i) }, (_, j) =>
          enqueueTest(store, { to: [`r${i + j}@localhost`], time, spooled: (i + j) % 100 === 0 }));
        for (const r of await Promise.all(batch)) ids.add(r.msg.id);
      }
    } finally {
      await close();
    }
    assert.equal(ids.size, N);
  });

  it(`--json --bodies: ${N} lines, every message once, in id order`, async () => {
    const r = await runCli(['showqueue', '--queue', big, '--json', '--bodies'], 60_000);
    assert.equal(r.code, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    assert.equal(lines.length, N);
    const listed = lines.map((l) => l.queue_id);
    assert.deepEqual(new Set(listed), ids);
    assert.deepEqual(listed, [...listed].sort(), 'in id order');
    for (const l of lines) assert.equal(Buffer.from(l.body_b64!, 'base64').length, l.message_size, l.queue_id);
    assert.equal(lines.filter((l) => l.path !== null).length, N / 100, 'the spooled ones have a path');
  });

  it(`text: the footer counts ${N} requests`, async () => {
    const r = await runCli(['showqueue', '--queue', big], 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split('\n').filter((l) => /^[0-9A-Z]{17}[ *!] /.test(l)).length, N);
    assert.match(r.stdout, new RegExp(`\\n-- \\d+ Kbytes in ${N} Requests\\.\\n$`));
  });
});
