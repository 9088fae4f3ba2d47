/**
 * The programs in examples/ type-check and do what they say, run as a user runs them.
 *
 * How `import … from 'smtp-receive'` resolves:
 * - for users, to the installed package (their app's node_modules/smtp-receive), and in a
 *   clone of this repository, from examples/ itself, to this package by self-reference
 *   (package.json "exports" → dist/, which `npm ci` builds): checked below;
 * - here, each example is copied into a temporary app, as a user copies it, whose
 *   node_modules/smtp-receive is a stub package re-exporting this repository's
 *   src/index.ts: the examples run against the code under test (dist/ is whatever was
 *   last built), and their `Receiver` is the very class the daemon (run from src/) loads.
 *
 * Each receiver example runs in the real CLI (`serve EXAMPLE.ts`), mail is sent with
 * nodemailer, and the outcome is read where the example puts it. Every child process is
 * tracked and stopped; the temporary app goes.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { webhookSignature } from '../src/receivers/webhook-signature.ts';
import { CliProcess, REPO_ROOT, spawnCli } from './helpers/cli.ts';
import { afterTraceHeaders, daemonRecords, until } from './helpers/queue.ts';

const EXAMPLES = join(REPO_ROOT, 'examples');
const exampleFiles = async (): Promise<string[]> => (await readdir(EXAMPLES)).filter((f) => f.endsWith('.ts')).sort();

let tmp: string;
let app: string;
const children: CliProcess[] = [];

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-examples-'));
  app = join(tmp, 'app');
  const pkg = join(app, 'node_modules', 'smtp-receive');
  await mkdir(pkg, { recursive: true });
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'example-app', private: true, type: 'module' }));
  await writeFile(join(pkg, 'package.json'), JSON.stringify({ name: 'smtp-receive', type: 'module', exports: { '.': './index.ts' } }));
  await writeFile(join(pkg, 'index.ts'), `export * from ${JSON.stringify(join(REPO_ROOT, 'src', 'index.ts'))};\n`);
  for (const f of await exampleFiles()) await copyFile(join(EXAMPLES, f), join(app, f));
});

after(async () => {
  await Promise.all(children.map((c) => c.kill()));
  await rm(tmp, { recursive: true, force: true });
});

/** `serve EXAMPLE` on a free port with its own queue; resolves once it greets. */
async function serve(example: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ port: number; queue: string; daemon: CliProcess }> {
  const queue = await mkdtemp(join(tmp, 'queue-'));
  const daemon = spawnCli(['serve', ...(example ? [join(app, example)] : []), '--listen', '127.0.0.1:0', '--queue', queue,
    '--no-reverse-dns', '--workers', '1', '--hostname', 'mx.example.com', ...args], env);
  children.push(daemon);
  const { port } = await daemon.ready(30_000);
  return { port, queue, daemon };
}

interface Sent { id: string; accepted: string[]; rejected: string[]; rejectedText: string[] }
interface Refused { code: number | undefined; response: string }

/** Sends `raw` with this envelope through nodemailer: the queue id and who was refused, or the refusal of the message. */
async function send(port: number, envelope: { from: string; to: string[] }, raw: string): Promise<Sent | Refused> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, socketTimeout: 20_000 });
  try {
    const info = await t.sendMail({ envelope, raw });
    const id = /queued as ([0-9A-Z]{17})/.exec(info.response)?.[1];
    assert.ok(id, info.response);
    const errors = (info as { rejectedErrors?: Array<{ response: string }> }).rejectedErrors ?? [];
    return { id, accepted: info.accepted as string[], rejected: info.rejected as string[], rejectedText: errors.map((e) => e.response) };
  } catch (err) {
    const e = err as { responseCode?: number; response?: string; message: string };
    return { code: e.responseCode, response: e.response ?? e.message };
  } finally {
    t.close();
  }
}

function sent(r: Sent | Refused): Sent {
  if (!('id' in r)) assert.fail(`expected the message to be queued, got ${r.code} ${r.response}`);
  return r;
}

function refused(r: Sent | Refused): Refused {
  if ('id' in r) assert.fail(`expected a refusal, got queued as ${r.id}`);
  return r;
}

const queueEmpty = (queue: string): Promise<void> =>
  until(async () => (await daemonRecords(queue)).size === 0, `the queue ${queue} to empty`, 20_000);

function message(headers: Record<string, string>, body: string): string {
  return `${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${body}`;
}

const proper = (subject: string, to = 'alice@example.com'): Record<string, string> => ({
  From: 'Sender <sender@example.org>', To: to, Subject: subject,
  Date: new Date().toUTCString().replace('GMT', '+0000'), 'Message-ID': `<${subject.replace(/\W/g, '')}@example.org>`,
});

describe('examples/: type check and resolution', () => {
  it('every example type-checks as a user project would (strict, nodenext, noImplicitOverride, noUnusedLocals)', async () => {
    const files = (await exampleFiles()).map((f) => join(EXAMPLES, f));
    assert.deepEqual((await exampleFiles()), ['seed.ts', 'spam-check.ts', 'webhook-app.ts']);
    // inside the repository (test/.readme-* is ignored by git), so that @types/node resolves
    const dir = await mkdtemp(join(REPO_ROOT, 'test', '.readme-examples-'));
    try {
      await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({
        compilerOptions: {
          target: 'ES2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true,
          noImplicitOverride: true, noUnusedLocals: true, skipLibCheck: true, types: ['node'], allowImportingTsExtensions: true,
          paths: { 'smtp-receive': [join(REPO_ROOT, 'src', 'index.ts')] },
        },
        files: [...files, join(REPO_ROOT, 'src', 'types', 'fs-native-extensions.d.ts')],
      }));
      const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      const out = await promisify(execFile)(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')], { cwd: dir })
        .then(() => '', (e: { stdout: string }) => e.stdout);
      assert.equal(out, '', 'tsc found errors in examples/');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("in a clone, 'smtp-receive' from examples/ is this package itself (self-reference to dist/, built by npm ci)", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e',
      "console.log(import.meta.resolve('smtp-receive'))"], { cwd: EXAMPLES });
    assert.equal(stdout.trim(), pathToFileURL(join(REPO_ROOT, 'dist', 'index.js')).href);
  });
});

describe('examples/seed.ts: one domain, predeliver, deliver and isDelivered', () => {
  let port: number;
  let queue: string;
  let inbox: string;
  before(async () => {
    inbox = join(tmp, 'seed-inbox');
    ({ port, queue } = await serve('seed.ts', [], { INBOX_DOMAIN: 'example.com', INBOX_DIR: inbox }));
  });

  it('delivers one file per recipient (postmaster redirected to admin), refuses other domains, and lets the message go', async () => {
    const raw = message(proper('seed example'), 'Hello from the seed.\r\n.leading dot\r\n');
    const r = sent(await send(port, { from: 'sender@example.org', to: ['alice@example.com', 'postmaster@example.com', 'bob@elsewhere.org'] }, raw));
    assert.deepEqual(r.rejected, ['bob@elsewhere.org']);
    assert.match(r.rejectedText[0]!, /^550 5\.7\.1 relaying denied/);
    const files = [join(inbox, 'alice', `${r.id}.eml`), join(inbox, 'admin', `${r.id}.eml`)];
    await queueEmpty(queue); // removed only once isDelivered says every recipient has its copy
    for (const f of files) assert.equal(afterTraceHeaders(await readFile(f)).toString('latin1'), raw, f);
    assert.deepEqual(await readdir(join(inbox, 'alice')), [`${r.id}.eml`], 'no temporary file left');
  });

  it('predeliver refuses a message without a From: header (550 5.6.0); bad local parts get 550 5.1.1', async () => {
    const headers: Record<string, string> = proper('no from');
    delete headers.From;
    const r = refused(await send(port, { from: 'sender@example.org', to: ['alice@example.com'] }, message(headers, 'x\r\n')));
    assert.equal(r.code, 550);
    assert.match(r.response, /^550 5\.6\.0 a message needs a From: header/);
    const bad = refused(await send(port, { from: 'sender@example.org', to: ['.hidden@example.com'] }, message(proper('bad'), 'x\r\n')));
    assert.match(bad.response, /550 5\.1\.1 no such mailbox/);
  });
});

describe('examples/spam-check.ts: a rule-based score in predeliver', () => {
  it('scores with plain rules (unit)', async () => {
    const { spamScore, SPAM_THRESHOLD } = await import(pathToFileURL(join(app, 'spam-check.ts')).href) as {
      spamScore: (text: string, recipients: number) => { score: number; reasons: string[] };
      SPAM_THRESHOLD: number;
    };
    assert.deepEqual(spamScore(message(proper('Lunch on Friday?'), 'See you at noon.\r\n'), 1), { score: 0, reasons: [] });
    const spam = spamScore(message({ From: 'x@example.org', Subject: 'YOU ARE A LOTTERY WINNER' }, 'Send a wire\r\n transfer now.\r\n'), 12);
    assert.deepEqual(spam.reasons, ['banned word "lottery winner"', 'banned word "wire transfer"', 'no Date header',
      'no Message-ID header', 'subject in capitals', '12 recipients']);
    assert.equal(spam.score, 13);
    assert.ok(spam.score >= SPAM_THRESHOLD);
  });

  it('delivers ham into the Maildir; refuses spam with 550 5.7.1 and the reasons, before anything is queued', async () => {
    const root = join(tmp, 'spam-mail');
    const { port, queue } = await serve('spam-check.ts', ['--domain', 'example.com'], { MAILDIR_ROOT: root });
    const ham = message(proper('Lunch on Friday?'), 'See you at noon.\r\n');
    const r = sent(await send(port, { from: 'sender@example.org', to: ['alice@example.com'] }, ham));
    await until(async () => (await readdir(join(root, 'alice@example.com', 'new')).catch(() => [])).length === 1, 'the Maildir copy', 20_000);
    const [name] = await readdir(join(root, 'alice@example.com', 'new'));
    assert.match(name!, new RegExp(`Q${r.id}\\.mx\\.example\\.com,S=\\d+$`));
    assert.equal(afterTraceHeaders(await readFile(join(root, 'alice@example.com', 'new', name!))).toString('latin1'), ham);

    const spam = refused(await send(port, { from: 'sender@example.org', to: ['alice@example.com'] },
      message(proper('Cheap viagra'), 'Buy viagra at our casino.\r\n')));
    assert.equal(spam.code, 550);
    assert.match(spam.response, /^550 5\.7\.1 message refused as spam \(score 6: banned word "viagra", banned word "casino"\)/);

    // no Date, no Message-ID: 4 points, under the threshold for one recipient; over it for eleven
    const bare = message({ From: 'sender@example.org', Subject: 'newsletter' }, 'Hello.\r\n');
    sent(await send(port, { from: 'sender@example.org', to: ['bob@example.com'] }, bare));
    const many = Array.from({ length: 11 }, (_, i) => `user${i}@example.com`);
    const crowd = refused(await send(port, { from: 'sender@example.org', to: many }, bare));
    assert.match(crowd.response, /^550 5\.7\.1 message refused as spam \(score 6: no Date header, no Message-ID header, 11 recipients\)/);
    await queueEmpty(queue);
    assert.deepEqual((await readdir(root)).sort(), ['alice@example.com', 'bob@example.com'], 'refused mail reached no Maildir');
  });
});

describe('examples/webhook-app.ts: serve --webhook posts to the app, which verifies and saves', () => {
  const secret = 'example-secret-7c21';
  let appUrl: string;
  let appProcess: CliProcess;
  let inbox: string;

  before(async () => {
    inbox = join(tmp, 'webhook-inbox');
    // run as its README says (node --import tsx webhook-app.ts); tsx from this repository
    appProcess = new CliProcess(spawn(process.execPath, ['--import', 'tsx', join(app, 'webhook-app.ts')], {
      cwd: REPO_ROOT, env: { ...process.env, WEBHOOK_SECRET: secret, INBOX_DIR: inbox, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'],
    }));
    children.push(appProcess);
    await until(() => /listening on (http:\S+)/.test(appProcess.stdout) || appProcess.hasExited, 'the webhook app to listen', 20_000);
    appUrl = /listening on (http:\S+)/.exec(appProcess.stdout)?.[1] ?? assert.fail(`webhook app: ${appProcess.stderr}`);
  });

  it('without WEBHOOK_SECRET it refuses to start', async () => {
    const env = { ...process.env };
    delete env.WEBHOOK_SECRET;
    const p = new CliProcess(spawn(process.execPath, ['--import', 'tsx', join(app, 'webhook-app.ts')], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }));
    children.push(p);
    assert.equal((await p.waitExit(20_000)).code, 2);
    assert.match(p.stderr, /set WEBHOOK_SECRET/);
  });

  it('a message sent over SMTP reaches the app signed, is saved byte-exact under its queue id, and leaves the queue', async () => {
    const { port, queue } = await serve('', ['--webhook', appUrl, '--webhook-secret', secret, '--domain', 'example.com']);
    const raw = message(proper('to the app', 'dave@example.com'), 'Posted to the app.\r\n');
    const r = sent(await send(port, { from: 'sender@example.org', to: ['dave@example.com'] }, raw));
    const file = join(inbox, `${r.id}.eml`);
    await until(async () => (await readFile(file).catch(() => undefined)) !== undefined, 'the app to save the message', 20_000);
    assert.equal(afterTraceHeaders(await readFile(file)).toString('latin1'), raw);
    await until(() => appProcess.stdout.includes(`verified ${r.id} from <sender@example.org> to dave@example.com`), 'the app to log it');
    await queueEmpty(queue); // the 204 delivered it
  });

  it('refuses requests whose signature does not verify (401), other paths and methods', async () => {
    const body = Buffer.from('Subject: forged\r\n\r\nx\r\n');
    const h = { timestamp: String(Math.floor(Date.now() / 1000)), id: '0MX4N0YA80000RJZ3', from: 'a@example.org', to: 'dave@example.com' };
    const headers = {
      'x-smtp-receive-timestamp': h.timestamp, 'x-smtp-receive-id': h.id, 'x-smtp-receive-from': h.from, 'x-smtp-receive-to': h.to,
      'x-smtp-receive-signature': webhookSignature(secret, h, body), 'content-type': 'message/rfc822',
    };
    const post = (hd: Record<string, string>, b: Buffer): Promise<number> => fetch(appUrl, { method: 'POST', headers: hd, body: new Uint8Array(b) }).then((res) => res.status);
    assert.equal(await post(headers, body), 204, 'correctly signed');
    assert.equal(await post(headers, Buffer.from('Subject: forged\r\n\r\ny\r\n')), 401, 'another body');
    assert.equal(await post({ ...headers, 'x-smtp-receive-to': 'mallory@example.com' }, body), 401, 'another recipient');
    assert.equal(await post({ ...headers, 'x-smtp-receive-signature': webhookSignature('guess', h, body) }, body), 401, 'another secret');
    const { 'x-smtp-receive-signature': _s, ...unsigned } = headers;
    assert.equal(await post(unsigned, body), 401, 'unsigned');
    assert.equal((await fetch(appUrl)).status, 405);
    assert.equal((await fetch(new URL('/other', appUrl), { method: 'POST', body: 'x' })).status, 404);
  });
});
