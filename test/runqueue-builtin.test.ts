/**
 * `runqueue` with no daemon on a queue that `serve` filled while running a
 * built-in receiver: it delivers with the receiver serve recorded (and its
 * settings, never a secret), or with one the built-in flags choose; a queue
 * written by an earlier version (the module's path, or null) still reads.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { verifyWebhookSignature } from '../src/index.ts';
import { CommandUsageError } from '../src/main/command.ts';
import { findReceiver } from '../src/main/find-receiver.ts';
import { recordBuiltin, type RecordedBuiltin } from '../src/receivers/recorded.ts';
import { runCli, spawnCli } from './helpers/cli.ts';
import { enqueueTest } from './helpers/enqueue.ts';
import { maildirEntries, sendRaw, testMessage } from './helpers/mail.ts';
import { ownQueue } from './helpers/owned.ts';

const FLAKY = new URL('./fixtures/flaky-deliver.ts', import.meta.url).pathname;

let tmp: string;
before(async () => { tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-rqb-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

/** Starts `serve` with these receiver flags and no runner, queues one message per recipient, stops it. */
async function queueThroughServe(queue: string, receiverFlags: string[], to: string[]): Promise<string[]> {
  const p = spawnCli(['serve', '--listen', '127.0.0.1:0', '--queue', queue, '--no-reverse-dns', '--workers', '1', '--no-runner', ...receiverFlags]);
  try {
    const { port } = await p.ready();
    const ids: string[] = [];
    for (const rcpt of to) ids.push(await sendRaw(port, { from: 'sender@example.org', to: [rcpt] }, testMessage(`rqb-${rcpt}`)));
    assert.equal((await p.signal('SIGTERM')).code, 0, p.stderr);
    return ids;
  } finally {
    await p.kill();
  }
}

async function queued(queue: string): Promise<number> {
  const q = await ownQueue(queue);
  try {
    return q.store.count();
  } finally {
    await q.close();
  }
}

/** A webhook endpoint on 127.0.0.1 that answers 200 and keeps each request. */
async function webhookSink(): Promise<{ url: string; hits: Array<{ headers: IncomingHttpHeaders; body: Buffer }>; server: Server }> {
  const hits: Array<{ headers: IncomingHttpHeaders; body: Buffer }> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => {
      hits.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mail?token=abc`, hits, server };
}

async function closeSink(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

describe('runqueue with no daemon, after serve ran a built-in receiver', () => {
  it('--maildir DIR: delivers into DIR, says so in one line, and the queue is empty after', async () => {
    const queue = join(tmp, 'q-maildir');
    const mail = join(tmp, 'mail');
    await queueThroughServe(queue, ['--maildir', mail], ['alice@localhost', 'bob@localhost']);
    assert.equal(await queued(queue), 2, 'nothing delivered while serve ran (--no-runner)');

    const shown = await runCli(['showqueue', '--queue', queue]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(shown.stderr, `smtp-receive: using the built-in maildir receiver recorded by serve: ${mail}\n`);

    const r = await runCli(['runqueue', '--queue', queue], 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `smtp-receive: using the built-in maildir receiver recorded by serve: ${mail}\n`);
    assert.match(r.stdout, /^runqueue: 2 attempted, 2 delivered, 0 deferred, 0 held, 0 skipped\n$/);
    for (const who of ['alice@localhost', 'bob@localhost']) assert.equal((await maildirEntries(mail, who, 'new')).length, 1, who);
    assert.equal(await queued(queue), 0);
  });

  it('--webhook URL --webhook-secret-file FILE: the pass POSTs, signed with the file\'s secret; the queue keeps the path, not the secret', async () => {
    const sink = await webhookSink();
    const secretFile = join(tmp, 'hook-secret');
    await writeFile(secretFile, 'f1le-secret-7781\n', { mode: 0o600 });
    const queue = join(tmp, 'q-webhook-file');
    try {
      const [id] = await queueThroughServe(queue, ['--webhook', sink.url, '--webhook-secret-file', secretFile], ['hook@localhost']);
      assert.equal(sink.hits.length, 0);
      const db = await readFile(join(queue, 'db', 'data.mdb'));
      assert.ok(db.includes(secretFile) && db.includes(sink.url), 'the record is in the file, as plain text');
      assert.ok(!db.includes('f1le-secret-7781'), 'the secret is not');

      const r = await runCli(['runqueue', '--queue', queue], 60_000);
      assert.equal(r.code, 0, r.stderr);
      // the URL without its query string (it may hold a token)
      const where = sink.url.replace(/\?.*/, '');
      assert.equal(r.stderr, `smtp-receive: using the built-in webhook receiver recorded by serve: ${where} (signed with the secret in ${secretFile})\n`);
      assert.match(r.stdout, /^runqueue: 1 attempted, 1 delivered/);
      assert.equal(sink.hits.length, 1);
      const hit = sink.hits[0]!;
      assert.equal(hit.headers['x-smtp-receive-id'], id);
      assert.equal(verifyWebhookSignature('f1le-secret-7781', hit.headers, hit.body), true, 'signed with the file\'s secret');
      assert.equal(await queued(queue), 0);
    } finally {
      await closeSink(sink.server);
    }
  });

  it('--webhook-secret given inline: runqueue asks for it again (exit 2), and delivers with --webhook-secret', async () => {
    const sink = await webhookSink();
    const queue = join(tmp, 'q-webhook-inline');
    try {
      await queueThroughServe(queue, ['--webhook', sink.url, '--webhook-secret', 'inl1ne-secret-4410'], ['hook@localhost']);
      assert.ok(!(await readFile(join(queue, 'db', 'data.mdb'))).includes('inl1ne-secret-4410'), 'the secret is not in the queue');

      const refused = await runCli(['runqueue', '--queue', queue], 60_000);
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, /^smtp-receive: the built-in webhook receiver that serve ran signed its requests with a secret given inline \(--webhook-secret\), which the queue does not keep: give it with --webhook-secret-file FILE or --webhook-secret SECRET\n$/);
      assert.equal(refused.stdout, '');
      assert.equal(sink.hits.length, 0, 'nothing sent unsigned');
      assert.equal(await queued(queue), 1);

      const r = await runCli(['runqueue', '--queue', queue, '--webhook-secret', 'inl1ne-secret-4410'], 60_000);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /using the built-in webhook receiver recorded by serve: http:\/\/127\.0\.0\.1:\d+\/mail\n/);
      assert.match(r.stdout, /^runqueue: 1 attempted, 1 delivered/);
      assert.equal(verifyWebhookSignature('inl1ne-secret-4410', sink.hits[0]!.headers, sink.hits[0]!.body), true);
      assert.equal(await queued(queue), 0);
    } finally {
      await closeSink(sink.server);
    }
  });
});

describe('runqueue with no daemon on a queue an earlier version wrote', () => {
  it('null (a built-in receiver, which it did not record): the hint names the flags, and --maildir DIR delivers', async () => {
    const queue = join(tmp, 'q-old-null');
    const q = await ownQueue(queue);
    try {
      await enqueueTest(q.store, { to: ['old@localhost'], time: Date.now() - 1000 });
      await q.store.root.put('receiver', null); // what serve wrote before the receiver record
    } finally {
      await q.close();
    }
    const none = await runCli(['runqueue', '--queue', queue], 60_000);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /using the built-in receiver \(no --receiver given and none recorded in the queue\)/);
    assert.match(none.stderr, /no deliver\(\); nothing to do .*--maildir DIR, --webhook URL or --relay HOST\[:PORT\]/);

    const mail = join(tmp, 'old-mail');
    const r = await runCli(['runqueue', '--queue', queue, '--maildir', mail], 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '', 'a receiver the flags chose is not announced');
    assert.match(r.stdout, /^runqueue: 1 attempted, 1 delivered/);
    assert.equal((await maildirEntries(mail, 'old@localhost', 'new')).length, 1);
  });

  it('a module path: used as before; a newer record that an older serve overwrote is ignored', async () => {
    const queue = join(tmp, 'q-old-module');
    const q = await ownQueue(queue);
    try {
      await enqueueTest(q.store, { to: ['ok@localhost'], time: Date.now() - 1000 });
      // a newer serve recorded a built-in receiver, then an older one ran with a module
      await q.store.recordReceiver(undefined, { builtin: recordBuiltin({ kind: 'maildir', options: { root: join(tmp, 'stale') } }), hostname: 'mx.test' });
      await q.store.root.put('receiver', FLAKY);
      assert.deepEqual(q.store.recordedSetup(), { module: FLAKY });
    } finally {
      await q.close();
    }
    const r = await runCli(['runqueue', '--queue', queue], 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `smtp-receive: using the receiver recorded by serve: ${FLAKY}\n`);
    assert.match(r.stdout, /^runqueue: 1 attempted, 1 delivered/);
  });
});

describe('what the queue records of a built-in receiver', () => {
  it('its settings, paths absolute; secrets and options that may hold credentials withheld', () => {
    assert.deepEqual(recordBuiltin({ kind: 'maildir', options: { root: 'rel/mail' } }), { kind: 'maildir', options: { root: resolve('rel/mail') }, withheld: [] });
    assert.deepEqual(recordBuiltin({ kind: 'maildir' }), { kind: 'maildir', options: { root: resolve('mail') }, withheld: [] });
    const hook = recordBuiltin({ kind: 'webhook', options: { url: 'https://h.example/x', secret: 'S3', timeout: 5000, headers: { authorization: 'Bearer T0' } } });
    assert.deepEqual(hook, { kind: 'webhook', options: { url: 'https://h.example/x', timeout: 5000 }, withheld: ['secret', 'headers'] });
    assert.doesNotMatch(JSON.stringify(hook), /S3|T0/);
    assert.deepEqual(recordBuiltin({ kind: 'webhook', options: { url: 'https://h.example/x', secret: 'S3' }, secretFile: 'secret.txt' }),
      { kind: 'webhook', options: { url: 'https://h.example/x' }, withheld: ['secret'], secretFile: resolve('secret.txt') });
    assert.deepEqual(recordBuiltin({ kind: 'relay', options: { host: 'mx.example', port: 587, auth: { user: 'u', pass: 'P4' } } }),
      { kind: 'relay', options: { host: 'mx.example', port: 587 }, withheld: ['auth'] });
  });

  it('findReceiver: flags of the recorded kind change it, others replace it; withheld options are asked for', () => {
    const said: string[] = [];
    const say = (l: string): void => { said.push(l); };
    const hook: RecordedBuiltin = { kind: 'webhook', options: { url: 'https://h.example/x', timeout: 5000 }, withheld: ['secret'] };
    const merged = findReceiver({ builtin: { kind: 'webhook', options: { url: undefined as unknown as string, secret: 'given' } } }, { builtin: hook }, say);
    assert.deepEqual(merged, { path: undefined, source: 'recorded', builtin: { kind: 'webhook', options: { url: 'https://h.example/x', timeout: 5000, secret: 'given' } } });
    const other = findReceiver({ builtin: { kind: 'webhook', options: { url: 'https://other.example/' } } }, { builtin: hook }, say);
    assert.deepEqual(other.builtin, { kind: 'webhook', options: { url: 'https://other.example/' } }, 'another URL is another receiver');
    assert.equal(other.source, 'flag');
    assert.equal(findReceiver({ secretsOptional: true }, { builtin: hook }, say).source, 'recorded', 'a listing needs no secret');
    const relay: RecordedBuiltin = { kind: 'relay', options: { host: 'mx.example' }, withheld: ['auth'] };
    assert.throws(() => findReceiver({}, { builtin: relay }, say), (e: Error) => e instanceof CommandUsageError && /\(auth: they may hold credentials\).*runQueue\(\)/.test(e.message));
    assert.deepEqual(said, [
      'using the built-in webhook receiver recorded by serve: https://h.example/x',
      'using the built-in webhook receiver recorded by serve: https://h.example/x',
    ]);
  });
});
