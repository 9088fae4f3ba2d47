/**
 * The bench keeps working: its smoke scenario (a few hundred messages, every
 * reply checked) exits 0 — it exits 1 on any refused or unanswered message.
 * No speed is asserted.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { spawn } from 'node:child_process';
import { REPO_ROOT } from './helpers/cli.ts';

it('npm run bench -- smoke: every message accepted, no errors', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', 'smoke'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  assert.equal(code, 0, out);
  assert.match(out, /smoke x8 +smtp-receive +1 /);
});
