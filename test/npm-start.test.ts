/**
 * `npm start` stops on SIGTERM: npm forwards the signal to the shell it runs
 * the script in, and the script `exec`s the daemon, so the daemon is that
 * process (without exec, the shell died and the daemon, re-parented to PID 1,
 * went on answering). Runs the built CLI (bin/ → dist/, built by `npm ci`).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { REPO_ROOT } from './helpers/cli.ts';

/** Pids of the processes below `root` (from /proc), with their command lines. */
async function descendants(root: number): Promise<Array<{ pid: number; cmd: string }>> {
  const parent = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid) parent.set(Number(name), ppid);
  }
  const out: Array<{ pid: number; cmd: string }> = [];
  for (const [pid] of parent) {
    let p: number | undefined = pid;
    for (let depth = 0; p && p !== root && depth < 20; depth++) p = parent.get(p);
    if (p !== root) continue;
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ');
    out.push({ pid, cmd });
  }
  return out;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const refused = (port: number): Promise<boolean> => new Promise((resolve) => {
  const s = connect({ port, host: '127.0.0.1' });
  s.once('connect', () => { s.destroy(); resolve(false); });
  s.once('error', () => resolve(true));
});

it('npm start: SIGTERM to npm stops the daemon and closes its port', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-npm-start-'));
  const npm = spawn('npm', ['start', '--', '--listen', '127.0.0.1:0', '--queue', join(dir, 'queue'), '--maildir', join(dir, 'mail'),
    '--no-reverse-dns', '--workers', '1', '--hostname', 'npm-start.invalid'], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', SMTP_RECEIVE_LOG: 'warn' },
  });
  let daemon: number | undefined;
  try {
    let out = '';
    let err = '';
    npm.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`npm start did not say "listening" within 60 s; stdout: ${out}; stderr: ${err}`)), 60_000);
      npm.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      void exited.then((code) => reject(new Error(`npm start exited (${code}) before listening; stderr: ${err}`)));
    });
    // the node process (not a shell) running the CLI
    const daemons = (await descendants(npm.pid!)).filter((p) => /^\S*node \S*smtp-receive\.js serve/.test(p.cmd));
    assert.equal(daemons.length, 1, `one daemon below npm: ${JSON.stringify(daemons)}`);
    daemon = daemons[0]!.pid;
    assert.equal(await refused(port), false, 'the daemon answers on its port');

    npm.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'late'>((r) => setTimeout(() => r('late'), 60_000))]);
    assert.notEqual(code, 'late', 'npm exits after SIGTERM');
    for (let i = 0; i < 100 && alive(daemon); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(alive(daemon), false, `the daemon (pid ${daemon}) is gone once npm has exited`);
    assert.equal(await refused(port), true, 'its port is closed');
  } finally {
    if (daemon !== undefined && alive(daemon)) process.kill(daemon, 'SIGKILL');
    if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
