/**
 * A real HAProxy (the Debian package's /usr/sbin/haproxy) for tests: writes
 * the given configuration to a temporary file, checks it (`haproxy -c`),
 * starts it in the foreground (-db) and waits until its frontends accept
 * connections; stop() ends that one process (by its pid) and removes the file.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const HAPROXY = process.env.HAPROXY ?? '/usr/sbin/haproxy';

/** A port nothing listens on right now (the kernel's pick, released again). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Resolves when something accepts a TCP connection on host:port (tried every 100 ms, up to `timeoutMs`). */
export async function accepting(port: number, host = '127.0.0.1', timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ port, host }, () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing accepts connections on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface HaproxyProcess {
  child: ChildProcess;
  /** What HAProxy wrote so far (warnings, alerts). */
  output(): string;
  stop(): Promise<void>;
}

/** Checks and starts HAProxy with `config`; resolves once `waitPort` (a frontend of the config) accepts connections. */
export async function startHaproxy(config: string, waitPort: number): Promise<HaproxyProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-haproxy-'));
  const file = join(dir, 'haproxy.cfg');
  await writeFile(file, config);
  const check = await new Promise<{ code: number; text: string }>((resolve) => {
    execFile(HAPROXY, ['-c', '-f', file], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) || 1 : 0, text: stdout + stderr });
    });
  });
  if (check.code !== 0) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`haproxy -c refused the configuration:\n${check.text}\n${config}`);
  }
  const child = spawn(HAPROXY, ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let gone = false;
  void exited.then(() => { gone = true; });
  const stop = async (): Promise<void> => {
    if (!gone) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await Promise.race([
      accepting(waitPort),
      exited.then(() => { throw new Error(`haproxy exited at start:\n${out}`); }),
    ]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { child, output: () => out, stop };
}
