/**
 * The run-time patches of smtp-server and lmdb-js (src/patch/): each refuses,
 * changing nothing, a copy that is not exactly the code it was written
 * against (another version, a modified or missing method or file); each
 * patches a pristine copy once; the daemon refuses to start without them; and
 * lmdb's guard keeps a failed commit from ending the process (a file size
 * limit makes the commits fail, no root needed; without the guard the same
 * child dies of the unhandled rejection).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as lmdb from 'lmdb';
import { LMDB_VERSION, lmdbPatched, patchLmdb } from '../src/patch/lmdb.ts';
import { SMTP_SERVER_PATCH, SMTP_SERVER_VERSION, patchSmtpServer, type SmtpServerModule } from '../src/patch/smtp-server.ts';
import { installed } from '../src/patch/verify.ts';
import { startTestServer } from '../src/testing.ts';
import { REPO_ROOT } from './helpers/cli.ts';

type Proto = Record<string, unknown>;
const allDbs = (lmdb as unknown as { allDbs: Map<unknown, unknown> }).allDbs;
type Classes = Pick<SmtpServerModule, 'SMTPServer' | 'SMTPConnection' | 'SMTPStream'>;

let fresh = 0;
/** A second, unpatched instance of smtp-server's three classes (the same files, imported under another URL). */
async function unpatchedSmtpServer(): Promise<SmtpServerModule> {
  const { dir, version } = installed('smtp-server');
  const load = async (file: string): Promise<Record<string, never>> =>
    (await import(`${pathToFileURL(join(dir, 'dist/esm', file)).href}?unpatched=${++fresh}`)) as Record<string, never>;
  return {
    dir, version,
    SMTPServer: (await load('smtp-server.js')).SMTPServer,
    SMTPConnection: (await load('smtp-connection.js')).SMTPConnection,
    SMTPStream: (await load('smtp-stream.js')).SMTPStream,
  };
}

const METHODS = {
  SMTPConnection: ['init', 'connectionReady', 'send', '_onCommand'],
  SMTPServer: ['_handleProxy', '_expectsProxyHeader'],
  SMTPStream: ['_feedDataStream'],
} as const;

/** The methods a patch replaces, and the marker: what must stay as it was after a refusal. */
function snapshot(m: Classes): unknown[] {
  return [
    ...Object.entries(METHODS).flatMap(([cls, names]) => names.map((n) => (m[cls as keyof Classes].prototype as Proto)[n])),
    (m.SMTPServer as unknown as { smtpReceivePatch?: number }).smtpReceivePatch,
  ];
}

describe('the smtp-server run-time patch', () => {
  it('patches a pristine smtp-server once; patching it again changes nothing', async () => {
    const m = await unpatchedSmtpServer();
    const before = snapshot(m);
    assert.equal(before.at(-1), undefined, 'not patched yet');
    patchSmtpServer(m);
    const after = snapshot(m);
    assert.equal(after.at(-1), SMTP_SERVER_PATCH);
    after.slice(0, -1).forEach((fn, i) => assert.notEqual(fn, before[i], `method ${i} replaced`));
    patchSmtpServer(m);
    assert.deepEqual(snapshot(m), after);
  });

  it('refuses another version, changing nothing', async () => {
    const m = await unpatchedSmtpServer();
    const before = snapshot(m);
    assert.throws(() => patchSmtpServer({ ...m, version: '3.21.7' }), (err: Error) => {
      assert.equal(err.name, 'PatchError');
      assert.equal((err as Error & { code?: string }).code, 'ERR_SMTP_RECEIVE_PATCH');
      assert.match(err.message, new RegExp(`^smtp-receive cannot patch smtp-server: it needs smtp-server ${SMTP_SERVER_VERSION.replace(/\./g, '\\.')} exactly, and \\S+ is smtp-server 3\\.21\\.7`));
      assert.match(err.message, /refuses to run with an unpatched smtp-server/);
      return true;
    });
    assert.deepEqual(snapshot(m), before);
  });

  it('refuses a modified method (e.g. a copy patched on disk), changing nothing', async () => {
    const m = await unpatchedSmtpServer();
    const proto = m.SMTPConnection.prototype as Proto;
    const send = proto.send as (...a: unknown[]) => unknown;
    proto.send = function (this: unknown, ...a: unknown[]) { return send.apply(this, a); };
    const before = snapshot(m);
    assert.throws(() => patchSmtpServer(m), /SMTPConnection\.prototype\.send is not the code this patch was written against \(fingerprint [0-9a-f]{16}, expected c33568c0111a58b2\)/);
    assert.deepEqual(snapshot(m), before);
  });

  it('refuses a missing method, changing nothing', async () => {
    const m = await unpatchedSmtpServer();
    delete (m.SMTPStream.prototype as Proto)._feedDataStream;
    const before = snapshot(m);
    assert.throws(() => patchSmtpServer(m), /SMTPStream\.prototype\._feedDataStream is missing/);
    assert.deepEqual(snapshot(m), before);
  });
});

describe('the lmdb-js run-time patch', () => {
  let dir: string;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'smtp-receive-patch-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('is loaded: the allDbs map of the lmdb this process uses is hooked', () => {
    assert.equal(lmdbPatched(), true);
    assert.notEqual(allDbs.set, Map.prototype.set);
  });

  it('refuses another version or a modified file, changing nothing', async () => {
    const real = installed('lmdb');
    const map = new Map();
    assert.throws(() => patchLmdb({ ...real, version: '3.5.7', allDbs: map }),
      new RegExp(`cannot patch lmdb: it needs lmdb ${LMDB_VERSION.replace(/\./g, '\\.')} exactly, and \\S+ is lmdb 3\\.5\\.7`));
    const copy = join(dir, 'lmdb');
    await mkdir(copy);
    await copyFile(join(real.dir, 'open.js'), join(copy, 'open.js'));
    await writeFile(join(copy, 'write.js'), `${await readFile(join(real.dir, 'write.js'), 'utf8')}\n// modified\n`);
    assert.throws(() => patchLmdb({ dir: copy, version: real.version, allDbs: map }),
      /cannot patch lmdb: \S+write\.js is not the code this patch was written against/);
    assert.throws(() => patchLmdb({ ...real, allDbs: undefined }), /its `allDbs` export is missing/);
    assert.equal(Object.hasOwn(map, 'set'), false, 'the map was left alone');
  });

  it('the daemon refuses to start without it', async () => {
    const map = allDbs as unknown as Record<symbol, unknown>;
    const key = Symbol.for('smtp-receive.lmdb-commit-guard');
    const saved = map[key];
    delete map[key];
    try {
      await assert.rejects(startTestServer(), /lmdb is not patched/);
    } finally {
      map[key] = saved;
    }
  });

  it('is not patched when another copy of lmdb-js (its CommonJS build) opens the databases', () => {
    const addon = (lmdb as unknown as { nativeAddon: { open?: unknown } }).nativeAddon;
    const saved = addon.open;
    addon.open = function openOfAnotherCopy() {};
    try {
      assert.equal(lmdbPatched(), false);
    } finally {
      addon.open = saved;
    }
    assert.equal(lmdbPatched(), true);
  });

  // a commit that fails for lack of space; POSIX shells only (ulimit, trap)
  const child = (mode: string, db: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const script = `trap '' XFSZ; ulimit -f 2048; exec "$0" --import tsx test/fixtures/lmdb-commit-failure.ts "$1" "$2"`;
      execFile('/bin/sh', ['-c', script, process.execPath, db, mode], { cwd: REPO_ROOT, timeout: 60_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
      });
    });

  it('a failed commit rejects the writes but no longer ends the process', { skip: process.platform === 'win32' }, async () => {
    const unguarded = await child('none', join(dir, 'unguarded'));
    assert.notEqual(unguarded.code, 0, `without the patch the child dies: ${unguarded.stdout}`);
    assert.match(unguarded.stderr, /Commit failed \(see commitError for details\)/);
    assert.doesNotMatch(unguarded.stdout, /survived/);

    const guarded = await child('guard', join(dir, 'guarded'));
    assert.equal(guarded.code, 0, guarded.stderr);
    const counts = JSON.parse(guarded.stdout.split('\n')[0]!) as { ok: number; failed: number };
    assert.ok(counts.ok > 0 && counts.failed > 0, `some writes committed, then some failed: ${guarded.stdout}`);
    assert.match(guarded.stdout, /survived/);
  });
});
