/**
 * Installed as a dependency, as an app does it: `npm pack` (which builds
 * dist/), a fresh app (`npm init -y`, "type": "module"), plain `npm install`
 * of the tarball (from the npm cache when it can), the app's own receiver
 * module, and `npx smtp-receive serve` in the app. A message sent with
 * nodemailer is delivered byte-exact by the app's deliver(); the installed
 * copy greets and refuses like this repository (its smtp-server is patched);
 * require() gets the ESM-only message; and with an smtp-server or lmdb that is
 * not exactly the expected code, serve refuses to start.
 *
 * Every child is bounded in time; the daemon runs in its own process group
 * (npx → sh → node), which is signalled by its pid; the temporary directory goes.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { CliProcess, REPO_ROOT } from './helpers/cli.ts';
import { jsonLines } from './helpers/logs.ts';
import { afterTraceHeaders, until } from './helpers/queue.ts';
import { RawClient, isQueued, queuedId } from './helpers/smtp.ts';

// the app's own receiver: appends each delivered message (id and bytes) to delivered.jsonl
const RECEIVER = `import { appendFileSync } from 'node:fs';
import { Receiver } from 'smtp-receive';

export default class MyReceiver extends Receiver {
  async deliver(message, body) {
    const bytes = await body.buffer();
    const line = JSON.stringify({ id: message.id, bytes: bytes.toString('base64') });
    appendFileSync(new URL('./delivered.jsonl', import.meta.url), line + '\\n');
  }
}
`;

const RAW = Buffer.from('From: sender@example.org\r\nTo: someone@localhost\r\nSubject: installed as a dependency\r\n' +
  'Message-ID: <package-test@example.org>\r\n\r\nHello from the app.\r\n.\r\n..two dots\r\nGrüße\r\n');

/** The environment of a fresh shell: none of `npm test`'s own npm_* settings (local prefix!) or this repository's bins. */
function appEnv(): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_registry', 'npm_config_cafile']);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || keep.has(k)));
  delete env.INIT_CWD;
  env.PATH = (env.PATH ?? '').split(delimiter).filter((p) => !p.startsWith(join(REPO_ROOT, 'node_modules'))).join(delimiter);
  return env;
}

interface Ran { code: number | null; stdout: string; stderr: string }

/** Runs a command to its end; a non-zero exit is a result, running past `timeoutMs` kills it. */
function run(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: appEnv(), timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string; killed?: boolean }) | null;
      if (e?.killed) stderr += `\n(killed after ${timeoutMs} ms)`;
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
    });
  });
}

describe('installed as a dependency (npm pack, npm install in a fresh app)', { timeout: 300_000 }, () => {
  let tmp: string;
  let app: string;
  let daemon: CliProcess | undefined;
  const killGroup = (signal: NodeJS.Signals): void => {
    try {
      if (daemon && !daemon.hasExited) process.kill(-daemon.pid, signal); // the group we created: npx, sh, node
    } catch { /* already gone */ }
  };
  const onExit = (): void => killGroup('SIGKILL');

  before(async () => {
    process.on('exit', onExit);
    tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-package-'));
    app = join(tmp, 'app');
  });
  after(async () => {
    if (daemon && !daemon.hasExited) {
      killGroup('SIGTERM');
      const t = setTimeout(() => killGroup('SIGKILL'), 10_000);
      await daemon.exited;
      clearTimeout(t);
    }
    process.off('exit', onExit);
    await rm(tmp, { recursive: true, force: true });
  });

  it('packs (prepare builds dist/) and installs into a fresh app with plain npm install', async () => {
    const pack = await run('npm', ['pack', '--pack-destination', tmp], REPO_ROOT, 180_000);
    assert.equal(pack.code, 0, pack.stderr);
    const tarball = (await readdir(tmp)).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, `a tarball in ${tmp}: ${pack.stdout}`);

    await mkdir(app);
    const init = await run('npm', ['init', '-y'], app, 30_000);
    assert.equal(init.code, 0, init.stderr);
    const pkg = JSON.parse(await readFile(join(app, 'package.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(app, 'package.json'), JSON.stringify({ ...pkg, type: 'module' }, null, 2));
    const install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(tmp, tarball)], app, 180_000);
    assert.equal(install.code, 0, install.stderr);

    const installed = join(app, 'node_modules', 'smtp-receive');
    const manifest = JSON.parse(await readFile(join(installed, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
    for (const hook of ['preinstall', 'install', 'postinstall']) assert.equal(manifest.scripts?.[hook], undefined, `no ${hook} script`);
    for (const file of ['dist/index.js', 'dist/main/cli.js', 'dist/patch/smtp-server.js', 'dist/patch/lmdb.js', 'bin/smtp-receive.js', 'cjs/index.cjs', 'LICENSE']) {
      await readFile(join(installed, file)); // throws ENOENT when the tarball lacks it
    }
  });

  it("npx smtp-receive serve runs the app's receiver: a message sent with nodemailer is delivered byte-exact", async () => {
    await writeFile(join(app, 'my-receiver.js'), RECEIVER);
    const child = spawn('npx', ['smtp-receive', 'serve', './my-receiver.js', '--listen', '127.0.0.1:0', '--queue', './queue', '--no-reverse-dns',
      '--metrics', '127.0.0.1:0'], {
      cwd: app, env: appEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    daemon = new CliProcess(child);
    const { port } = await daemon.ready(30_000);

    const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, socketTimeout: 10_000 });
    try {
      const info = await transport.sendMail({ envelope: { from: 'sender@example.org', to: ['someone@localhost'] }, raw: RAW });
      const id = /queued as ([0-9A-Z]+)/.exec(info.response)?.[1];
      assert.ok(id, info.response);
      const delivered = async (): Promise<Buffer | undefined> => {
        const text = await readFile(join(app, 'delivered.jsonl'), 'utf8').catch(() => '');
        const entry = jsonLines<{ id: string; bytes: string }>(text).find((e) => e.id === id);
        return entry && Buffer.from(entry.bytes, 'base64');
      };
      await until(async () => (await delivered()) !== undefined, `delivery of ${id} by the app's receiver`, 20_000);
      assert.equal(afterTraceHeaders((await delivered())!).toString('latin1'), RAW.toString('latin1'));
    } finally {
      transport.close();
    }
  });

  it('the installed copy behaves as this repository: early talkers wait, own enhanced codes, no smuggling', async () => {
    const port = (await daemon!.listening()).port;
    const c = await RawClient.connect(port);
    try {
      c.write('EHLO early.test\r\n'); // before the greeting: answered after it (greetPause 0)
      assert.deepEqual([(await c.read()).code, (await c.read()).code], [220, 250]);
      assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 250);
      const relay = await c.command('RCPT TO:<x@example.com>'); // the receiver's own "5.7.1 …", not doubled
      assert.match(relay.text, /^550 5\.7\.1 [^\d]/);
      assert.equal((await c.command('RSET')).code, 250);
      const replies = await c.pipelined(['MAIL FROM:<honest@example.org>', 'RCPT TO:<user@localhost>', 'DATA']);
      assert.deepEqual(replies.map((r) => r.code), [250, 250, 354]);
      c.write('Subject: smuggling\r\n\r\nbefore\n.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\nsmuggled\r\n\r\n.\r\nQUIT\r\n');
      const rest = await c.readUntilClosed();
      assert.equal(rest.filter(isQueued).length, 1, rest.map((r) => r.text).join(' | '));
      assert.deepEqual(rest.map((r) => r.code), [250, 221]);
      assert.ok(queuedId(rest[0]!));
    } finally {
      await c.quit();
    }
  });

  it('stops on SIGTERM; the app can import it; require() says it is ESM-only', async () => {
    // the daemon's own pid (npx runs it through sh), from the queue's lock file: "PID ROLE"
    const [pid, role] = (await readFile(join(app, 'queue', 'lock'), 'utf8')).trim().split(' ');
    assert.equal(role, 'serve');
    process.kill(Number(pid), 'SIGTERM');
    const exit = await daemon!.waitExit(15_000);
    assert.equal(exit.code, 0, daemon!.stderr);
    assert.match(daemon!.stderr, /SIGTERM: stopping/);

    const imported = await run(process.execPath, ['--input-type=module', '-e',
      "import { Receiver, startTestServer } from 'smtp-receive'; const s = await startTestServer(); console.log(typeof Receiver, s.port > 0); await s.stop();"],
    app, 30_000);
    assert.equal(imported.code, 0, imported.stderr);
    assert.equal(imported.stdout.trim(), 'function true');

    const required = await run(process.execPath, ['-e', "require('smtp-receive')"], app, 30_000);
    assert.notEqual(required.code, 0);
    assert.match(required.stderr, /smtp-receive is ESM-only: use import \(or await import\('smtp-receive'\)\)/);
  });

  it('refuses to start with an smtp-server or lmdb that is not exactly the expected code', async () => {
    const serve = (): Promise<Ran> => run('npx', ['smtp-receive', 'serve', './my-receiver.js', '--listen', '127.0.0.1:0',
      '--queue', './queue', '--no-reverse-dns'], app, 30_000);
    const smtpServerJson = join(app, 'node_modules', 'smtp-server', 'package.json');
    const json = await readFile(smtpServerJson, 'utf8');
    await writeFile(smtpServerJson, json.replace(/"version": "3\.21\.6"/, '"version": "3.21.7"'));
    try {
      const r = await serve();
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^smtp-receive cannot patch smtp-server: it needs smtp-server 3\.21\.6 exactly, and \S+ is smtp-server 3\.21\.7/m);
      assert.doesNotMatch(r.stdout, /listening on/);
    } finally {
      await writeFile(smtpServerJson, json);
    }
    const writeJs = join(app, 'node_modules', 'lmdb', 'write.js');
    const code = await readFile(writeJs);
    await appendFile(writeJs, '\n// changed by hand\n');
    try {
      const r = await serve();
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^smtp-receive cannot patch lmdb: \S+write\.js is not the code this patch was written against/m);
      assert.doesNotMatch(r.stdout, /listening on/);
    } finally {
      await writeFile(writeJs, code);
    }
  });
});
