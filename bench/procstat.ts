/**
 * CPU time and memory of a server under test, read from /proc.
 *
 * - CPU: utime + stime (+ cutime + cstime, the reaped children) from
 *   /proc/PID/stat; the kernel sums those over all of a process's threads, so a
 *   Node server with its worker threads is one number. With `tree`, every live
 *   descendant is added too (Postfix: master, smtpd, cleanup, qmgr …); a child
 *   that exits and is reaped moves into its parent's cutime/cstime, so nothing
 *   is counted twice or lost.
 * - Memory: VmRSS sampled every `intervalMs`, and the root's VmHWM (the
 *   kernel's own peak, for the process's whole life). With `tree`, the sample is
 *   the sum of Pss (/proc/PID/smaps_rollup) instead: summing RSS over 40 Postfix
 *   processes would count their shared libraries 40 times.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let clockTicks = 100;
try {
  clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch { /* 100 is Linux's USER_HZ almost everywhere */ }

export interface ProcStats {
  /** CPU seconds (user + system) the server used during the window. */
  cpuSeconds: number;
  /** Largest sampled RSS during the window, bytes (with `tree`: the sum of PSS over the tree). */
  peakRssBytes: number;
  /** Largest sampled RssAnon (heap, stacks; not mapped files such as LMDB's map), bytes (summed over the tree). */
  peakAnonBytes: number;
  /** The root process's VmHWM at the end of the window, bytes (its whole life). */
  hwmBytes: number;
  /** Processes seen in the tree (1 for a single process). */
  processes: number;
  samples: number;
}

interface StatLine { ppid: number; ticks: number }

function readStat(pid: number): StatLine | undefined {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // the command name (field 2) may hold spaces and parentheses: split after the last ')'
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17
  return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
}

function statusField(pid: number, name: string, file = 'status'): number {
  try {
    const s = readFileSync(`/proc/${pid}/${file}`, 'latin1');
    const i = s.indexOf(`${name}:`);
    if (i < 0) return 0;
    return parseInt(s.slice(i + name.length + 1), 10) * 1024; // "VmRSS:   12345 kB"
  } catch {
    return 0;
  }
}

/** The root and its live descendants. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const st = readStat(pid);
    if (!st) continue;
    let list = children.get(st.ppid);
    if (!list) children.set(st.ppid, (list = []));
    list.push(pid);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop()!;
    out.push(pid);
    for (const c of children.get(pid) ?? []) todo.push(c);
  }
  return out;
}

export class ProcSampler {
  private timer: NodeJS.Timeout | undefined;
  private startTicks = 0;
  private peakRss = 0;
  private peakAnon = 0;
  private samples = 0;
  private maxProcs = 1;

  constructor(readonly pid: number, readonly tree = false, readonly intervalMs = 100) {}

  private pids(): number[] {
    return this.tree ? processTree(this.pid) : [this.pid];
  }

  private ticks(pids: number[]): number {
    let t = 0;
    for (const p of pids) t += readStat(p)?.ticks ?? 0;
    return t;
  }

  private sample(): void {
    const pids = this.pids();
    this.maxProcs = Math.max(this.maxProcs, pids.length);
    let rss = 0;
    let anon = 0;
    for (const p of pids) {
      rss += this.tree ? statusField(p, 'Pss', 'smaps_rollup') : statusField(p, 'VmRSS');
      anon += statusField(p, 'RssAnon');
    }
    this.peakRss = Math.max(this.peakRss, rss);
    this.peakAnon = Math.max(this.peakAnon, anon);
    this.samples++;
  }

  start(): void {
    this.startTicks = this.ticks(this.pids());
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): ProcStats {
    clearInterval(this.timer);
    this.sample();
    const end = this.ticks(this.pids());
    return {
      cpuSeconds: (end - this.startTicks) / clockTicks,
      peakRssBytes: this.peakRss,
      peakAnonBytes: this.peakAnon,
      hwmBytes: statusField(this.pid, 'VmHWM'),
      processes: this.maxProcs,
      samples: this.samples,
    };
  }
}
