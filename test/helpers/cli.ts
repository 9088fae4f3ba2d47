/**
 * Running the real CLI (`node --import tsx src/main/cli.ts …`) as a child
 * process: spawn, wait for "listening on", signal, wait for the exit. Every
 * child is tracked so a failing test still stops it (only pids we spawned).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RawClient } from './smtp.ts';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<ChildProcess>();

// Safety net: a test process that ends (or fails) never leaves a daemon behind.
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export class CliProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  private exit: Exit | undefined;
  private wakers: Array<() => void> = [];

  constructor(readonly child: ChildProcess) {
    live.add(child);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { this.stdout += d; this.wake(); });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      // keep the start and end of a long log; enough to explain a failure
      this.stderr = this.stderr.length > 200_000 ? this.stderr.slice(0, 100_000) + this.stderr.slice(-50_000) + d : this.stderr + d;
      this.wake();
    });
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': by then all of stdout and stderr has been read
      child.once('close', (code, signal) => {
        live.delete(child);
        this.exit = { code, signal };
        this.wake();
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get hasExited(): boolean {
    return this.exit !== undefined;
  }

  private wake(): void {
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  private async until<T>(test: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = test();
      if (v !== undefined) return v;
      if (this.exit) throw new Error(`${what}: the process exited (${JSON.stringify(this.exit)}); stderr:\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; stdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.max(1, Math.min(200, deadline - Date.now())));
        this.wakers.push(() => { clearTimeout(t); res(); });
      });
    }
  }

  /** Waits for `smtp-receive: listening on HOST:PORT` on stdout. */
  listening(timeoutMs = 20_000): Promise<{ host: string; port: number }> {
    return this.until(() => {
      const m = /listening on \[?([^\s\]]+?)\]?:(\d+),/.exec(this.stdout);
      return m ? { host: m[1]!, port: Number(m[2]) } : undefined;
    }, timeoutMs, 'waiting for "listening on"');
  }

  /**
   * Waits for "listening on", then for one SMTP greeting. The greeting proves the
   * daemon's event loop has turned since it printed the line, so its SIGTERM/SIGINT
   * handlers (installed just after the print) are in place: a signal sent right
   * after the line alone can still find the default action and kill it outright.
   */
  async ready(timeoutMs = 20_000): Promise<{ host: string; port: number }> {
    const address = await this.listening(timeoutMs);
    const c = await RawClient.greeted(address.port, address.host);
    await c.quit();
    return address;
  }

  /** Sends a signal (to this child only) and waits for it to exit. */
  async signal(signal: NodeJS.Signals, timeoutMs = 15_000): Promise<Exit> {
    if (!this.exit) this.child.kill(signal);
    return this.waitExit(timeoutMs);
  }

  /** Waits for the exit; past `timeoutMs` the child is killed and the wait fails. */
  async waitExit(timeoutMs = 20_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`pid ${this.pid} did not exit within ${timeoutMs} ms; stderr:\n${this.stderr}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops the child whatever its state (for `finally` / `after`): SIGTERM, then SIGKILL. */
  async kill(): Promise<void> {
    if (this.exit) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
  }
}

/**
 * `serve` without a metrics listener unless the test asks for one: the default
 * (127.0.0.1:9525) would make daemons running at once collide.
 */
export function metricsOffByDefault(args: string[]): string[] {
  if (args[0] !== 'serve' || args.some((a) => a === '--metrics' || a.startsWith('--metrics='))) return args;
  return ['serve', '--metrics', 'off', ...args.slice(1)];
}

/** Spawns `node --import tsx src/main/cli.ts ARGS` in the repository root (`serve`: metrics off unless asked). */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}): CliProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main/cli.ts', ...metricsOffByDefault(args)], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new CliProcess(child);
}

/** Runs the CLI to its end (killed past `timeoutMs`, which fails). */
export async function runCli(args: string[], timeoutMs = 20_000): Promise<Exit & { stdout: string; stderr: string }> {
  const p = spawnCli(args);
  try {
    const exit = await p.waitExit(timeoutMs);
    return { ...exit, stdout: p.stdout, stderr: p.stderr };
  } finally {
    await p.kill();
  }
}
