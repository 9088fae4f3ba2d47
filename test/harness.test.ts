/** startTestServer, the harness for users' tests: it never leaves a temporary queue behind. */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { startTestServer } from '../src/index.ts';

// a private TMPDIR (os.tmpdir() reads it at each call): other test runs on the machine cannot mix in
const savedTmp = process.env.TMPDIR;
let mine: string;
const queues = (): string[] => readdirSync(mine).filter((f) => f.startsWith('smtp-receive-test-'));
before(() => {
  mine = mkdtempSync(join(tmpdir(), 'smtp-receive-harness-'));
  process.env.TMPDIR = mine;
});
after(() => {
  if (savedTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = savedTmp;
  rmSync(mine, { recursive: true, force: true });
});

it('a start-up that fails (a receiver module that does not exist) removes its temporary queue', async () => {
  await assert.rejects(startTestServer({ receiverPath: join(mine, 'no-such-receiver.mjs') }));
  assert.deepEqual(queues(), []);
});

it('stop() removes the temporary queue of a server that started', async () => {
  const server = await startTestServer();
  assert.deepEqual(queues(), [server.queueDir.split('/').pop()]);
  await server.stop();
  assert.deepEqual(queues(), []);
});
