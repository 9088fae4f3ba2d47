/**
 * The greeting pause (`--greet-pause`, smtp-server patched by patch-package):
 * with 0 a command sent before the greeting is answered after it; with a pause
 * a client that talks first is refused with 421. And a check that the patch
 * in patches/ is the one applied to node_modules.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { REPO_ROOT } from './helpers/cli.ts';
import { afterTraceHeaders, storedMessage } from './helpers/queue.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

describe('greetPause: 0 (the default)', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer(); });
  after(async () => { await server?.stop(); });

  it('answers a command sent before the greeting after the greeting', async () => {
    const c = await RawClient.connect(server.port);
    try {
      c.write('EHLO early.test\r\n'); // before reading anything
      const greeting = await c.read();
      assert.equal(greeting.code, 220, greeting.text);
      const ehlo = await c.read();
      assert.equal(ehlo.code, 250, ehlo.text);
      assert.match(ehlo.lines[0]!, /^250-test\.invalid /);
    } finally {
      await c.quit();
    }
  });

  it('answers several early commands in order, then serves a whole transaction', async () => {
    const c = await RawClient.connect(server.port);
    try {
      c.write('EHLO early.test\r\nNOOP\r\nMAIL FROM:<a@example.org>\r\n');
      const replies = [await c.read(), await c.read(), await c.read(), await c.read()];
      assert.deepEqual(replies.map((r) => r.code), [220, 250, 250, 250], replies.map((r) => r.text).join(' | '));
      const rcpt = await c.command('RCPT TO:<b@localhost>');
      assert.equal(rcpt.code, 250, rcpt.text);
      const body = 'Subject: early\r\n\r\ntalked first\r\n';
      const id = queuedId(await c.data(body));
      const stored = await storedMessage(server.store, id);
      assert.equal(stored?.record.msg.helo, 'early.test');
      assert.equal(afterTraceHeaders(stored!.bytes).toString('latin1'), body);
    } finally {
      await c.quit();
    }
  });
});

describe('greetPause: 500', () => {
  let server: TestServer;
  before(async () => { server = await startTestServer({ greetPause: 500 }); });
  after(async () => { await server?.stop(); });

  it('refuses a client that talks before the greeting with 421 and disconnects it', async () => {
    const c = await RawClient.connect(server.port);
    try {
      c.write('EHLO early.test\r\n');
      const reply = await c.read();
      assert.equal(reply.code, 421, reply.text);
      assert.match(reply.text, /talk too soon/i);
      assert.ok(await c.closedByServer(), 'the server closed the connection');
    } finally {
      c.socket.destroy();
    }
  });

  it('serves a client that waits for the greeting', async () => {
    const c = await RawClient.ready(server.port); // reads the 220 first, then EHLO
    try {
      const id = queuedId(await c.send('a@example.org', ['b@localhost'], 'Subject: patient\r\n\r\nwaited\r\n'));
      assert.ok(server.store.has(id));
    } finally {
      await c.quit();
    }
  });
});

describe('the smtp-server patch', () => {
  it('is loaded: SMTPServer carries the patch marker', () => {
    assert.equal((SMTPServer as unknown as { smtpReceivePatch?: number }).smtpReceivePatch, 1);
  });

  it('the daemon refuses to start without it', async () => {
    const marked = SMTPServer as unknown as { smtpReceivePatch?: number };
    const saved = marked.smtpReceivePatch;
    delete marked.smtpReceivePatch;
    try {
      await assert.rejects(startTestServer(), /smtp-server is not patched/);
    } finally {
      marked.smtpReceivePatch = saved;
    }
  });

  // patch-package has no --check flag; before applying a patch it dry-runs the patch (and, to detect an
  // already applied one, its reverse) with its own parser. Do the same: the patch file in patches/ must
  // reverse cleanly against node_modules (= it is applied as written) and must not apply again.
  it('every patch in patches/ is applied to node_modules, as patch-package checks it', () => {
    const require = createRequire(join(REPO_ROOT, 'package.json'));
    const { parsePatchFile } = require('patch-package/dist/patch/parse') as { parsePatchFile(text: string): unknown[] };
    const { reversePatch } = require('patch-package/dist/patch/reverse') as { reversePatch(p: unknown[]): unknown[] };
    const { executeEffects } = require('patch-package/dist/patch/apply') as {
      executeEffects(effects: unknown[], o: { dryRun: boolean; cwd: string; bestEffort: boolean }): void;
    };
    const patches = readdirSync(join(REPO_ROOT, 'patches')).filter((f) => f.endsWith('.patch'));
    assert.ok(patches.includes('smtp-server+3.21.6.patch'), `patches/: ${patches.join(', ')}`);
    const installed = JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules/smtp-server/package.json'), 'utf8')) as { version: string };
    for (const file of patches) {
      const [, pkg, version] = /^(.+)\+([^+]+)\.patch$/.exec(file) ?? [];
      if (pkg === 'smtp-server') assert.equal(installed.version, version, 'the installed smtp-server is the patched version');
      const patch = parsePatchFile(readFileSync(join(REPO_ROOT, 'patches', file), 'utf8'));
      assert.ok(patch.length > 0, `${file} has changes`);
      assert.doesNotThrow(() => executeEffects(reversePatch(patch), { dryRun: true, cwd: REPO_ROOT, bestEffort: false }),
        `${file} is applied (its reverse applies cleanly)`);
      assert.throws(() => executeEffects(patch, { dryRun: true, cwd: REPO_ROOT, bestEffort: false }),
        `${file} is not applicable a second time`);
    }
  });
});
