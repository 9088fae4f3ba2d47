/**
 * The built-in Maildir receiver: one byte-exact copy per recipient in new/,
 * unique names, folder names no address can escape the root with, mail
 * tools read it (Python's mailbox module), a retry never writes a second
 * copy, and a SIGKILL between tmp/ and the rename leaves no half message in new/.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StoredBody } from '../src/core/body.ts';
import { Message } from '../src/core/message.ts';
import { runQueue } from '../src/index.ts';
import { MaildirReceiver, maildirFolder, maildirName } from '../src/receivers/maildir.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { runCli, spawnCli } from './helpers/cli.ts';
import { maildirEntries, MAILDIR_NAME, newMail, sendRaw, testMessage } from './helpers/mail.ts';
import { daemonStored, storedMessage, until } from './helpers/queue.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

const CRASHING = new URL('./fixtures/maildir-crash.ts', import.meta.url).pathname;

let tmp: string;
before(async () => { tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-maildir-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

describe('Maildir folder names', () => {
  it('lower-cases the address and keeps plain characters', () => {
    assert.equal(maildirFolder('Someone@LocalHost'), 'someone@localhost');
    assert.equal(maildirFolder('a.b+tag_x=y-z@mail.example.net'), 'a.b+tag_x=y-z@mail.example.net');
    assert.equal(maildirFolder('postmaster'), 'postmaster');
  });

  it('no address names a path separator, `.` or `..`, or a hidden folder', () => {
    for (const a of ['../../etc/passwd@localhost', '..', '.', '.hidden@localhost', 'a/b@localhost', 'a\\b@x', '%2E%2E', '..@localhost', '']) {
      const f = maildirFolder(a);
      assert.ok(!f.includes('/') && !f.includes('\\') && !f.startsWith('.') && f !== '' && !f.includes('\0'), `${JSON.stringify(a)} → ${f}`);
    }
    assert.equal(maildirFolder('../x@localhost'), '%2E.%2Fx@localhost');
    // '%' itself is encoded, so an encoded name cannot be typed as an address
    assert.notEqual(maildirFolder('%2E.@x'), maildirFolder('..@x'));
  });

  it('encodes other characters as %XX of their UTF-8 bytes, and bounds the length', () => {
    assert.equal(maildirFolder('jörg@localhost'), 'j%C3%B6rg@localhost');
    assert.equal(maildirFolder('"a b"@localhost'), '%22a%20b%22@localhost');
    const long = maildirFolder(`${'ä'.repeat(120)}@localhost`);
    assert.ok(long.length <= 200, `${long.length}`);
    assert.notEqual(long, maildirFolder(`${'ä'.repeat(119)}ö@localhost`), 'the hash keeps long names apart');
  });

  it('file names follow the Maildir spec and are the same for every attempt', () => {
    const m = { id: '0MX4OLAVR000072T1', time: 1_796_128_596_567, size: 439 };
    assert.equal(maildirName(m, 'mx.test'), '1796128596.M567000Q0MX4OLAVR000072T1.mx.test,S=439');
    assert.equal(maildirName(m, 'a/b:c,d'), '1796128596.M567000Q0MX4OLAVR000072T1.a\\057b\\072c\\054d,S=439');
  });
});

describe('Maildir receiver: a retry after a crash', () => {
  it('finds its earlier copy (isDelivered) and writing again leaves one file', async () => {
    const root = join(tmp, 'retry');
    const r = new MaildirReceiver({ root });
    r.config = { domains: ['localhost'], queueDir: tmp, hostname: 'retry.test' };
    const bytes = testMessage('retry');
    const snapshot = {
      id: '0MX4OLAVR000072T1', peerAddr: '127.0.0.1', peerHost: '', ident: '', helo: 'x', mimeType: '7BIT' as const,
      from: 'a@example.org', to: ['one@localhost'], time: Date.now(), textFile: join(tmp, 'unused.eml'), size: bytes.length,
    };
    const first = new Message(snapshot);
    assert.equal(await r.isDelivered(first, 'one@localhost'), false);
    await r.deliver(first, new StoredBody(bytes, bytes.length, snapshot.textFile));
    // a new attempt: a fresh Message, as a worker builds after a restart
    const retry = new Message(snapshot);
    assert.equal(await r.isDelivered(retry, 'one@localhost'), true, 'the copy in new/ is found');
    assert.equal(await r.isDelivered(retry), true);
    await r.deliver(retry, new StoredBody(bytes, bytes.length, snapshot.textFile));
    const files = await newMail(root, 'one@localhost');
    assert.equal(files.size, 1);
    assert.deepEqual([...files.values()][0], bytes);
  });

  it('a root that is a file is refused at start-up, naming the option', async () => {
    const file = join(tmp, 'not-a-dir');
    await writeFile(file, 'x');
    const r = new MaildirReceiver({ root: file });
    await assert.rejects(r.prestart({ domains: ['localhost'], queueDir: tmp, hostname: 'x' }), /MaildirReceiver option root: .*not-a-dir is not a directory/);
    assert.throws(() => new MaildirReceiver({ root: '' }), /MaildirReceiver option root: expected a directory path/);
  });
});

describe('Maildir receiver in the daemon', () => {
  let server: TestServer;
  let root: string;
  before(async () => {
    root = join(tmp, 'daemon-mail');
    // no runner: the test reads the stored bytes first, then has the daemon run a pass
    server = await startTestServer({ builtin: { kind: 'maildir', options: { root } }, runner: false, hostname: 'mx.test' });
  });
  after(async () => { await server.stop(); });

  it('one byte-exact copy per recipient in new/, unique names, readable by mail tools', async () => {
    const id1 = await sendRaw(server.port, { from: 'sender@example.org', to: ['alice@localhost', 'Bob@LOCALHOST'] }, testMessage('m1'));
    const id2 = await sendRaw(server.port, { from: '', to: ['alice@localhost'] }, testMessage('m2', 200));
    const s1 = (await storedMessage(server.store, id1))!.bytes;
    const s2 = (await storedMessage(server.store, id2))!.bytes;
    assert.equal((await readdir(root).catch(() => [])).length, 0, 'nothing delivered before the pass');

    const result = await runQueue({ queueDir: server.queueDir });
    assert.equal(result.delivered, 2);
    assert.equal(server.store.count(), 0, 'delivered messages leave the queue');

    const alice = await newMail(root, 'alice@localhost');
    const bob = await newMail(root, 'bob@localhost');
    assert.equal(alice.size, 2);
    assert.equal(bob.size, 1);
    const byId = (files: Map<string, Buffer>, id: string): [string, Buffer] => [...files].find(([n]) => n.includes(`Q${id}.`))!;
    assert.deepEqual(byId(alice, id1)[1], s1, 'alice: the stored bytes of message 1');
    assert.deepEqual(byId(alice, id2)[1], s2, 'alice: the stored bytes of message 2');
    assert.deepEqual(byId(bob, id1)[1], s1, 'bob: the stored bytes of message 1');
    for (const [name, bytes] of [...alice, ...bob]) {
      const m = MAILDIR_NAME.exec(name);
      assert.ok(m, name);
      assert.equal(m[4], 'mx.test');
      assert.equal(Number(m[5]), bytes.length, 'S= is the file size');
    }
    assert.notEqual(byId(alice, id1)[0], byId(alice, id2)[0]);
    for (const folder of ['alice@localhost', 'bob@localhost']) {
      assert.deepEqual(await maildirEntries(root, folder, 'tmp'), [], 'nothing left in tmp/');
      assert.ok((await stat(join(root, folder, 'cur'))).isDirectory());
      assert.equal((await stat(join(root, folder, 'new', [...(folder[0] === 'a' ? alice : bob).keys()][0]!))).mode & 0o777, 0o600);
    }
    // an ordinary mail tool: Python's mailbox module reads the Maildir
    const py = 'import mailbox,sys\nmd=mailbox.Maildir(sys.argv[1],create=False)\nprint(len(md)); print(sorted(m["Subject"] for m in md))';
    const out = execFileSync('python3', ['-c', py, join(root, 'alice@localhost')], { encoding: 'utf8' });
    assert.equal(out, "2\n['m1', 'm2']\n");
  });

  it('an address with a / in it stays one folder inside the root', async () => {
    // smtp-server refuses `..` in a local part; a '/' it takes (and a redirect can produce anything: see below)
    const c = await RawClient.ready(server.port);
    try {
      const replies = await c.envelope('sender@example.org', ['a/b@localhost']);
      assert.equal(replies[1]!.code, 250, replies[1]!.text);
      queuedId(await c.data(testMessage('slash').toString('latin1')));
    } finally {
      await c.quit();
    }
    await runQueue({ queueDir: server.queueDir });
    assert.equal(server.store.count(), 0);
    assert.equal((await newMail(root, 'a%2Fb@localhost')).size, 1);
    assert.ok(!existsSync(join(root, 'a')), 'no folder a/ with b@localhost under it');
  });
});

describe('Maildir receiver: recipients no SMTP client can send (a redirect can)', () => {
  it('../ in an address never leaves the root', async () => {
    const base = join(tmp, 'escape');
    const root = join(base, 'mail');
    const r = new MaildirReceiver({ root });
    r.config = { domains: ['localhost'], queueDir: tmp, hostname: 'x.test' };
    const bytes = testMessage('escape');
    const to = ['../../escape@localhost', '..', '.', '/abs@localhost'];
    const m = new Message({
      id: '0MX4OLAVR000073T1', peerAddr: '127.0.0.1', peerHost: '', ident: '', helo: 'x', mimeType: '7BIT',
      from: 'a@example.org', to, time: Date.now(), textFile: join(tmp, 'unused.eml'), size: bytes.length,
    });
    await r.deliver(m, new StoredBody(bytes, bytes.length, m.textFile));
    assert.deepEqual(await readdir(base), ['mail'], 'nothing beside the root');
    assert.deepEqual((await readdir(root)).sort(), to.map(maildirFolder).sort());
    for (const a of to) assert.equal((await newMail(root, maildirFolder(a))).size, 1, a);
  });
});

describe('Maildir receiver: SIGKILL between tmp/ and the rename', () => {
  it('leaves no half message in new/; after restart each recipient has exactly one complete copy', async () => {
    const dir = join(tmp, 'crash');
    const root = join(dir, 'mail');
    const queue = join(dir, 'queue');
    const mark = join(dir, 'hang-mark');
    const args = ['serve', CRASHING, '--listen', '127.0.0.1:0', '--queue', queue, '--no-reverse-dns', '--workers', '1', '--hostname', 'crash.test'];
    const first = spawnCli(args, { HANG_MARK: mark, MAILDIR_ROOT: root });
    let stored: Buffer;
    try {
      const { port } = await first.ready();
      const id = await sendRaw(port, { from: 'sender@example.org', to: ['first@localhost', 'second@localhost'] }, testMessage('crash', 2000));
      await until(() => existsSync(mark), 'the copy for second@ to stop half-written', 20_000);
      stored = (await daemonStored(queue, [id]))[0]!.bytes;
      assert.deepEqual([...(await newMail(root, 'first@localhost')).values()], [stored], 'first: complete in new/');
      assert.deepEqual(await maildirEntries(root, 'second@localhost', 'new'), [], 'second: nothing in new/');
      const half = await readFile(await readFile(mark, 'utf8'));
      assert.ok(half.length > 0 && half.length < stored.length, 'second: a partial file in tmp/');
      assert.equal((await first.signal('SIGKILL')).signal, 'SIGKILL');
    } finally {
      await first.kill();
    }
    assert.deepEqual(await maildirEntries(root, 'second@localhost', 'new'), [], 'the kill put nothing into new/');

    const second = spawnCli(args, { MAILDIR_ROOT: root });
    try {
      await second.ready();
      await until(async () => (await maildirEntries(root, 'second@localhost', 'new')).length > 0, 'the retry to deliver', 30_000);
      await until(async () => (await runCli(['showqueue', '--queue', queue])).stdout === 'Mail queue is empty\n', 'the queue to empty', 20_000);
    } finally {
      await second.kill();
    }
    for (const folder of ['first@localhost', 'second@localhost']) {
      assert.deepEqual([...(await newMail(root, folder)).values()], [stored!], `${folder}: exactly one complete copy`);
      assert.deepEqual(await maildirEntries(root, folder, 'tmp'), [], `${folder}: tmp/ is empty`);
    }
  });
});
