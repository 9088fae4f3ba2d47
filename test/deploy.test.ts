/**
 * deploy/: the systemd unit says what docs/deployment.md says it does, and — where
 * systemd's own tools are installed — systemd parses it without a warning
 * (`systemd-analyze verify`) and systemd-sysusers accepts the account file
 * (dry run, in a scratch root). Without the tools those two checks are skipped.
 * The unit is not started here: that needs systemd as PID 1.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from './helpers/cli.ts';

const UNIT = join(REPO_ROOT, 'deploy', 'smtp-receive.service');
const SYSUSERS = join(REPO_ROOT, 'deploy', 'smtp-receive.sysusers');

interface Ran { code: number; stdout: string; stderr: string }
function run(cmd: string, args: string[]): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const has = async (tool: string): Promise<boolean> => (await run('sh', ['-c', `command -v ${tool}`])).code === 0;

/** Every `Key=value` of the unit (continuation lines joined), in order. */
function settings(text: string): Array<[string, string]> {
  return text.replace(/\\\n\s*/g, ' ').split('\n').filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).trim()] as [string, string]);
}

describe('deploy/smtp-receive.service', () => {
  it('port 25 with CAP_NET_BIND_SERVICE only, a dedicated user, the queue in its StateDirectory, a stop timeout above --shutdown-grace', async () => {
    const s = settings(await readFile(UNIT, 'utf8'));
    const get = (k: string): string[] => s.filter(([key]) => key === k).map(([, v]) => v);
    const one = (k: string): string => {
      const v = get(k);
      assert.equal(v.length, 1, `${k} set once`);
      return v[0]!;
    };
    assert.equal(one('User'), 'smtp-receive');
    assert.equal(one('StateDirectory'), 'smtp-receive');
    assert.equal(one('AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
    assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
    assert.equal(one('Restart'), 'on-failure');
    assert.equal(one('KillSignal'), 'SIGTERM');
    for (const k of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'ProtectKernelTunables', 'ProtectKernelModules',
      'ProtectKernelLogs', 'ProtectControlGroups', 'RestrictNamespaces', 'RestrictSUIDSGID', 'LockPersonality']) assert.equal(one(k), 'yes', k);
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('RestrictAddressFamilies'), 'AF_INET AF_INET6 AF_UNIX', 'AF_UNIX: the control socket');
    assert.equal(one('SystemCallFilter'), '@system-service');
    assert.equal(one('SystemCallErrorNumber'), 'EPERM', 'a filtered call fails, it does not kill the process');
    for (const k of ['MemoryDenyWriteExecute', 'PrivateUsers', 'ProcSubset', 'DynamicUser']) assert.deepEqual(get(k), [], `${k}: breaks Node or port 25`);

    const exec = one('ExecStart');
    assert.match(exec, /^\/usr\/bin\/node \S+\/bin\/smtp-receive\.js serve /);
    assert.match(exec, / --listen 0\.0\.0\.0:25 /);
    assert.match(exec, / --queue \/var\/lib\/smtp-receive\/queue /);
    const grace = Number(/--shutdown-grace (\d+)/.exec(exec)?.[1] ?? 10_000);
    const stop = /^(\d+)s$/.exec(one('TimeoutStopSec'));
    assert.ok(stop && Number(stop[1]) * 1000 >= grace + 10_000, `TimeoutStopSec ${one('TimeoutStopSec')} leaves room after --shutdown-grace ${grace}`);
  });

  it('systemd-analyze verify: no warning (skipped without systemd-analyze)', async (t) => {
    if (!await has('systemd-analyze')) return t.skip('systemd-analyze is not installed');
    const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-unit-'));
    try {
      // verify checks that ExecStart's program exists: point it at this node
      const unit = join(dir, 'smtp-receive.service');
      await writeFile(unit, (await readFile(UNIT, 'utf8')).replace('ExecStart=/usr/bin/node ', `ExecStart=${process.execPath} `));
      const r = await run('systemd-analyze', ['verify', unit]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr.trim(), '', 'systemd-analyze verify warns (it exits 0 on unknown keys and bad values)');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('systemd-sysusers accepts the account file (dry run; skipped without systemd-sysusers)', async (t) => {
    if (!await has('systemd-sysusers')) return t.skip('systemd-sysusers is not installed');
    const root = await mkdtemp(join(tmpdir(), 'smtp-receive-sysusers-'));
    try {
      await mkdir(join(root, 'etc'));
      for (const f of ['passwd', 'group']) await copyFile(join('/etc', f), join(root, 'etc', f)).catch(() => writeFile(join(root, 'etc', f), ''));
      const r = await run('systemd-sysusers', [`--root=${root}`, '--dry-run', SYSUSERS]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout + r.stderr, /ignor|invalid|unknown|fail/i);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
