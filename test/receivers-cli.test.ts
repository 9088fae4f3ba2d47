/**
 * The built-in receivers from the command line: `serve` with no receiver
 * module delivers into ./mail (a fresh directory as the working directory,
 * as `npm start` in a fresh clone), --maildir / --webhook / --relay reach the
 * worker threads, and combinations that make no sense are usage errors (exit 2).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { verifyWebhookSignature } from '../src/index.ts';
import { CliProcess, REPO_ROOT, runCli, spawnCli } from './helpers/cli.ts';
import { maildirEntries, newMail, sendRaw, testMessage } from './helpers/mail.ts';
import { afterTraceHeaders, until } from './helpers/queue.ts';

const KEEP = new URL('./fixtures/keep-queued.ts', import.meta.url).pathname;

let tmp: string;
before(async () => { tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-rcli-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

/** Args that keep a wrongly started daemon harmless: any free port, a temporary queue. */
const safe = (name: string): string[] => ['--listen', '127.0.0.1:0', '--queue', join(tmp, name), '--no-reverse-dns', '--workers', '1'];

describe('smtp-receive serve with no receiver module, in a fresh directory', () => {
  it('a message to someone@localhost ends up in ./mail/someone@localhost/new/', async () => {
    const cwd = await mkdtemp(join(tmp, 'fresh-'));
    // the source CLI run from another directory: tsx by its resolved URL, as `npm start` needs no flags
    const tsx = import.meta.resolve('tsx');
    const p = new CliProcess(spawn(process.execPath, ['--import', tsx, join(REPO_ROOT, 'src/main/cli.ts'), 'serve',
      '--listen', '127.0.0.1:0', '--no-reverse-dns', '--workers', '1', '--metrics', 'off'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }));
    try {
      const { port } = await p.ready();
      assert.match(p.stdout, new RegExp(`queue ${join(cwd, 'queue')}`), 'the queue is ./queue');
      const raw = testMessage('fresh-tree');
      await sendRaw(port, { from: 'sender@example.org', to: ['someone@localhost'] }, raw);
      await until(async () => (await maildirEntries(join(cwd, 'mail'), 'someone@localhost', 'new')).length > 0, 'the message in ./mail', 20_000);
      const [copy] = [...(await newMail(join(cwd, 'mail'), 'someone@localhost')).values()];
      assert.deepEqual(afterTraceHeaders(copy!), raw, 'the message as sent, after our Received header');
      assert.match(p.stderr, new RegExp(`maildir: delivering mail for localhost into ${join(cwd, 'mail')}`));
      assert.deepEqual((await p.signal('SIGTERM')).code, 0);
    } finally {
      await p.kill();
    }
    assert.deepEqual((await readdir(cwd)).sort(), ['mail', 'queue']);
  });

  it('--maildir DIR and --domain: mail for that domain into DIR', async () => {
    const dir = join(tmp, 'maildir-flag');
    const p = spawnCli(['serve', ...safe('q-maildir'), '--maildir', dir, '--domain', 'example.net']);
    try {
      const { port } = await p.ready();
      await sendRaw(port, { from: 'sender@example.org', to: ['Info@Example.NET'] }, testMessage('maildir-flag'));
      await until(async () => (await maildirEntries(dir, 'info@example.net', 'new')).length === 1, 'the copy in DIR', 20_000);
    } finally {
      await p.kill();
    }
  });
});

describe('smtp-receive serve --webhook and --relay', () => {
  it('--webhook URL --webhook-secret S: each message is POSTed, signed', async () => {
    const bodies: Array<{ headers: Record<string, string | string[] | undefined>; body: Buffer }> = [];
    const http = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => {
        bodies.push({ headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mail`;
    // the secret on the command line, and from a file (not visible in ps): the file's line end is not part of it
    const secretFile = join(tmp, 'webhook-secret');
    await writeFile(secretFile, 'f1le-secret\n', { mode: 0o600 });
    const runs: Array<[string, string[]]> = [
      ['s3cret', ['--webhook-secret', 's3cret']],
      ['f1le-secret', ['--webhook-secret-file', secretFile]],
    ];
    try {
      for (const [secret, flags] of runs) {
        bodies.length = 0;
        const p = spawnCli(['serve', ...safe(`q-webhook-${flags[0]}`), '--webhook', url, ...flags, '--webhook-timeout', '5000']);
        try {
          const { port } = await p.ready();
          assert.ok(!p.stderr.includes(secret) && !p.stdout.includes(secret), 'the secret is not printed');
          const raw = testMessage('cli-webhook');
          const id = await sendRaw(port, { from: 'sender@example.org', to: ['hook@localhost'] }, raw);
          await until(() => bodies.length > 0, 'the POST', 20_000);
          assert.equal(bodies[0]!.headers['x-smtp-receive-id'], id);
          assert.deepEqual(afterTraceHeaders(bodies[0]!.body), raw);
          assert.equal(verifyWebhookSignature(secret, bodies[0]!.headers, bodies[0]!.body), true, `signed with ${flags[0]}'s secret`);
          assert.equal(verifyWebhookSignature(`${secret}\n`, bodies[0]!.headers, bodies[0]!.body), false);
        } finally {
          await p.kill();
        }
      }
    } finally {
      http.closeAllConnections();
      await new Promise<void>((r) => http.close(() => r()));
    }
  });

  it('--relay HOST:PORT: each message goes to the smarthost', async () => {
    const got: string[][] = [];
    const sink = new SMTPServer({
      logger: false, disabledCommands: ['AUTH', 'STARTTLS'], hideSTARTTLS: true,
      onData(stream, session, callback) {
        stream.resume();
        stream.on('end', () => { got.push(session.envelope.rcptTo.map((r) => r.address)); callback(); });
      },
    });
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
    const p = spawnCli(['serve', ...safe('q-relay'), '--relay', `127.0.0.1:${(sink.server.address() as AddressInfo).port}`]);
    try {
      const { port } = await p.ready();
      await sendRaw(port, { from: 'sender@example.org', to: ['fwd@localhost'] }, testMessage('cli-relay'));
      await until(() => got.length > 0, 'the smarthost to get it', 20_000);
      assert.deepEqual(got, [['fwd@localhost']]);
    } finally {
      await p.kill();
      await new Promise<void>((r) => sink.close(() => r()));
    }
  });
});

describe('smtp-receive serve: built-in receiver flags that make no sense exit 2, naming the flag', () => {
  it('each case exits 2 with a clear message and never listens', async () => {
    const file = join(tmp, 'a-file');
    await writeFile(file, 'x');
    const cases: Array<[string[], RegExp]> = [
      [[KEEP, '--webhook', 'http://127.0.0.1:9/'], /--webhook: built-in receiver flags do not go with a receiver module/],
      [['--receiver', KEEP, '--maildir', './m'], /--maildir: built-in receiver flags do not go with a receiver module/],
      [['--webhook', 'http://127.0.0.1:9/', '--relay', '127.0.0.1:25'], /choose one built-in receiver \(--webhook or --relay\)/],
      [['--maildir', './m', '--webhook-secret', 's'], /choose one built-in receiver \(--maildir or --webhook\)/],
      [['--webhook', 'ftp://example.net/'], /^smtp-receive: --webhook: expected an http\(s\) URL, got "ftp:\/\/example\.net\/"\n$/],
      [['--webhook-secret', 's'], /^smtp-receive: --webhook: missing: the http\(s\) URL to POST each message to\n$/],
      [['--webhook', 'http://127.0.0.1:9/', '--webhook-secret-file', join(tmp, 'no-such-secret')], /^smtp-receive: --webhook-secret-file: cannot read .*no-such-secret: ENOENT/],
      [['--webhook', 'http://127.0.0.1:9/', '--webhook-secret', 's', '--webhook-secret-file', file], /--webhook-secret, --webhook-secret-file: give the secret one way, not both/],
      [['--webhook', 'http://127.0.0.1:9/', '--webhook-timeout', 'soon'], /--webhook-timeout: expected a whole number, got "soon"/],
      [['--webhook', 'http://127.0.0.1:9/', '--webhook-timeout', '0'], /--webhook-timeout: must be a whole number of milliseconds/],
      [['--relay', 'a b:25'], /--relay: expected HOST or HOST:PORT/],
      [['--relay', 'mx.example.net:0'], /--relay: expected HOST or HOST:PORT/],
      [['--relay-timeout', '100'], /--relay: missing: the smarthost/],
      [['--maildir', file], /^smtp-receive: --maildir: .*a-file is not a directory\n$/],
    ];
    const results = await Promise.all(cases.map(async ([args], i) => runCli(['serve', ...safe(`q-bad-${i}`), ...args])));
    for (const [i, r] of results.entries()) {
      const what = `${cases[i]![0].join(' ')} → code ${r.code}, stderr ${JSON.stringify(r.stderr)}`;
      assert.equal(r.code, 2, what);
      assert.match(r.stderr.split('\n').filter((l) => l.startsWith('smtp-receive: ')).join('\n') + '\n', cases[i]![1], what);
      assert.doesNotMatch(r.stdout, /listening on/, what);
    }
    assert.ok(!existsSync(join(tmp, 'q-bad-11', 'control.sock')), 'the refused daemon left no socket');
    assert.equal(await readFile(file, 'utf8'), 'x');
  });
});
