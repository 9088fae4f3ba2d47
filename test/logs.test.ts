/**
 * serve's log (the CLI, as a child process): one line per session and per
 * message event, Postfix-like, as JSON (--log-format json) and as text (the
 * default), from real SMTP traffic against test/fixtures/logs-receiver.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnCli, type CliProcess } from './helpers/cli.ts';
import { jsonLines, sendTraffic, until } from './helpers/logs.ts';

const RECEIVER = new URL('./fixtures/logs-receiver.ts', import.meta.url).pathname;

let dir: string;
const daemons: CliProcess[] = [];
before(async () => { dir = await mkdtemp(join(tmpdir(), 'smtp-receive-logs-')); });
after(async () => {
  for (const d of daemons) await d.kill();
  await rm(dir, { recursive: true, force: true });
});

function serve(name: string, ...flags: string[]): CliProcess {
  const p = spawnCli(['serve', RECEIVER, '--listen', '127.0.0.1:0', '--queue', join(dir, name), '--no-reverse-dns',
    '--workers', '1', '--retry-min', '600000', ...flags], { SMTP_RECEIVE_LOG: '' });
  daemons.push(p);
  return p;
}

type Line = Record<string, unknown> & { level: string; time: string; msg: string; event?: string; id?: string };

describe('serve --log-format json', () => {
  it('every line is a JSON object; queued, rejected (RCPT, predeliver), deferred, delivered, hook and session lines carry their fields', async () => {
    const p = serve('json', '--log-format', 'json');
    const { port } = await p.ready();
    const { ok, deferred } = await sendTraffic(port);
    const lines = (): Line[] => jsonLines<Line>(p.stderr);
    const find = (f: (l: Line) => boolean): Line | undefined => lines().find(f);
    await until(() => !!find((l) => l.event === 'delivered') && !!find((l) => l.event === 'deferred')
      && !!find((l) => l.event === 'aborted') && lines().filter((l) => l.event === 'session').length >= 3
      && lines().filter((l) => l.event === 'hook').length >= 2, 'the lines of the traffic', 60_000, () => p.stderr);
    const exit = await p.signal('SIGTERM');
    assert.equal(exit.code, 0, p.stderr);

    const all = lines(); // every line parses (JSON.parse throws otherwise)
    for (const l of all) {
      assert.match(l.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(['debug', 'info', 'warn', 'error'].includes(l.level), JSON.stringify(l));
      assert.equal(typeof l.msg, 'string');
    }
    assert.equal(all.filter((l) => l.level === 'error').length, 0, p.stderr);

    const queued = all.filter((l) => l.event === 'queued');
    assert.deepEqual(queued.map((l) => l.id).sort(), [ok, deferred].sort());
    const q = queued.find((l) => l.id === ok)!;
    assert.equal(q.level, 'info');
    assert.equal(q.from, 'a@example.org');
    assert.equal(q.rcpts, 1);
    assert.ok((q.size as number) > 20, 'the stored size');
    assert.equal(q.peer, '127.0.0.1');
    assert.match(q.msg, new RegExp(`^${ok}: queued from=<a@example\\.org> size=\\d+ rcpts=1 peer=\\[127\\.0\\.0\\.1\\]`));

    const rejected = all.filter((l) => l.event === 'rejected');
    assert.deepEqual(rejected.map((l) => [l.stage, l.reason, l.reply]), [
      ['rcpt', 'receiver', '550 5.1.1 no such user'], ['predeliver', 'receiver', '554 5.7.1 looks like spam']]);
    for (const r of rejected) assert.equal(r.peer, '127.0.0.1');
    assert.deepEqual(rejected[0]!.to, ['nobody@localhost']);
    assert.equal(rejected[1]!.from, 'spam@example.org');
    assert.match(rejected[1]!.id!, /^[0-9A-Z]+$/, 'a refusal after DATA began names the message');
    assert.match(rejected[0]!.msg, /^NOQUEUE: rejected stage=rcpt .*: 550 5\.1\.1 no such user$/);

    const d = find((l) => l.event === 'deferred')!;
    assert.equal(d.id, deferred);
    assert.equal(d.attempt, 1);
    assert.equal(d.reason, 'mailbox busy');
    assert.ok(Date.parse(d.nextAttempt as string) > Date.parse(d.time) + 500_000, `next attempt after --retry-min: ${d.nextAttempt}`);
    const delivered = find((l) => l.event === 'delivered')!;
    assert.equal(delivered.id, ok);
    assert.equal(delivered.attempt, 1);
    assert.equal(typeof delivered.queuedMs, 'number', 'time in the queue');
    assert.match(delivered.msg, new RegExp(`^${ok}: delivered attempt=1 delay=[\\d.]+s`));

    // message.log in deliver (a worker thread) reaches the same log, tagged with the id
    const hooks = all.filter((l) => l.event === 'hook');
    assert.deepEqual(hooks.map((l) => l.id).sort(), [ok, deferred].sort());
    assert.ok(hooks.some((l) => l.msg === `${ok}: deliver: trying ok@localhost` && l.level === 'info'), JSON.stringify(hooks));

    const sessions = all.filter((l) => l.event === 'session');
    const traffic = sessions.find((l) => l.queued === 2)!;
    assert.ok(traffic, JSON.stringify(sessions));
    assert.equal(traffic.rejected, 2);
    assert.equal(traffic.helo, 'client.test');
    assert.equal(traffic.peer, '127.0.0.1');

    // the client that went away mid-DATA: info, no stack
    const aborted = find((l) => l.event === 'aborted')!;
    assert.equal(aborted.level, 'info');
    assert.match(aborted.msg, /disconnected during DATA/);
    assert.doesNotMatch(p.stderr, /\n\s+at |Connection closed before the message/, 'no stack, no error');
  });
});

describe('serve (text log, the default)', () => {
  it('TIME LEVEL TEXT lines: queued, rejected, deferred then expired (--max-lifetime 0), delivered, the session; mid-DATA is info', async () => {
    const p = serve('text', '--max-lifetime', '0');
    const { port } = await p.ready();
    const { ok, deferred } = await sendTraffic(port);
    await until(() => /expired/.test(p.stderr) && /delivered attempt/.test(p.stderr) && /disconnected during DATA/.test(p.stderr)
      && /queued=2 rejected=2/.test(p.stderr), 'the lines of the traffic', 60_000, () => p.stderr);
    const exit = await p.signal('SIGTERM');
    assert.equal(exit.code, 0, p.stderr);

    const lines = p.stderr.split('\n').filter(Boolean);
    for (const l of lines) assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) \S/, 'one line each, TIME LEVEL TEXT');
    const has = (re: RegExp): void => assert.ok(lines.some((l) => re.test(l)), `${re} in\n${p.stderr}`);
    has(new RegExp(`Z info ${ok}: queued from=<a@example\\.org> size=\\d+ rcpts=1 peer=\\[127\\.0\\.0\\.1\\]`));
    has(/Z info NOQUEUE: rejected stage=rcpt reason=receiver peer=\[127\.0\.0\.1\] from=<c@example\.org> to=<nobody@localhost> .*: 550 5\.1\.1 no such user$/);
    has(/Z info [0-9A-Z]+: rejected stage=predeliver reason=receiver peer=\[127\.0\.0\.1\] from=<spam@example\.org> .*: 554 5\.7\.1 looks like spam$/);
    has(new RegExp(`Z info ${ok}: delivered attempt=1 delay=[\\d.]+s`));
    // with no lifetime left, the failed attempt puts the message on hold at once
    has(new RegExp(`Z warn ${deferred}: expired attempt=1 .*now on hold: mailbox busy$`));
    has(new RegExp(`Z info ${deferred}: expired after 1 attempts, now on hold: mailbox busy$`)); // the expired() hook's message.log
    has(/Z info disconnect from \[127\.0\.0\.1\] helo=<client\.test> queued=2 rejected=2 time=[\d.]+s/);
    has(/Z info [0-9A-Z]+: client \[127\.0\.0\.1\] disconnected during DATA after \d+ bytes; nothing kept/);
    assert.ok(!lines.some((l) => / error /.test(l)), p.stderr);
  });

  it('--log-level warn: no per-message info lines', async () => {
    const p = serve('quiet', '--log-level', 'warn', '--max-lifetime', '0');
    const { port } = await p.ready();
    const { deferred } = await sendTraffic(port);
    // the expired warning comes after the attempt (and its worker's lines); the stop closes every session
    await until(() => p.stderr.includes(`warn ${deferred}: expired`), 'the expired warning', 60_000, () => p.stderr);
    const exit = await p.signal('SIGTERM');
    assert.equal(exit.code, 0, p.stderr);
    assert.doesNotMatch(p.stderr, / info /, p.stderr);
  });

  it('a bad --log-format, --log-level, --syslog or --syslog-facility: exit 2 naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--log-format', 'xml'], /^smtp-receive: --log-format: must be json or text, got "xml"\n$/],
      [['--log-level', 'loud'], /^smtp-receive: --log-level: must be debug, info, warn or error, got "loud"\n$/],
      [['--syslog', 'nowhere'], /^smtp-receive: --syslog: expected HOST:PORT .*got "nowhere"\n$/],
      [['--syslog-facility', 'toString'], /^smtp-receive: --syslog-facility: must be one of kern, user, mail, .*got "toString"\n$/],
    ];
    const results = await Promise.all(cases.map(async ([flags]) => {
      const p = serve(`bad-${flags[0]}`, ...flags);
      const exit = await p.waitExit(60_000);
      return { exit, stderr: p.stderr, stdout: p.stdout };
    }));
    for (const [i, r] of results.entries()) {
      assert.equal(r.exit.code, 2, r.stderr);
      assert.match(r.stderr, cases[i]![1]);
      assert.doesNotMatch(r.stdout, /listening/);
    }
  });
});
