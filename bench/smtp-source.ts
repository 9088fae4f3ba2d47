/**
 * Postfix's `smtp-source` as the client (`--client smtp-source`): the tool other
 * servers' published figures use. It has no pipelining and no latency output;
 * its `-c` counter (one number per completed DATA, separated by CR) gives the
 * count and the time of the last accepted message, which we time ourselves.
 * Without -A it stops at the first unexpected reply ("smtp-source: fatal: …").
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { LoadOptions, LoadResult, Stats } from './loadgen.ts';
import { ProcSampler } from './procstat.ts';

const none: Stats = { count: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };

export function smtpSourceArgs(o: LoadOptions): string[] {
  return [
    '-c', '-s', String(o.sessions), '-m', String(o.messages), '-l', String(o.size), '-r', String(o.rcpts),
    '-M', 'bench.invalid', '-f', 'bench@bench.invalid', '-t', `user@${o.rcptDomain}`,
    ...(o.perConnection > 1 ? ['-d'] : []), `${o.host}:${o.port}`,
  ];
}

export async function runSmtpSource(o: LoadOptions): Promise<LoadResult> {
  if (o.pipelining) throw new Error('smtp-source does not pipeline: drop --pipelining');
  const sampler = o.serverPid ? new ProcSampler(o.serverPid, o.serverTree) : undefined;
  sampler?.start();
  const t0 = performance.now();
  const child = spawn('smtp-source', smtpSourceArgs(o), { stdio: ['ignore', 'pipe', 'pipe'] });
  let count = 0;
  let last = t0;
  let stderr = '';
  child.stdout.setEncoding('latin1').on('data', (d: string) => {
    const parts = d.split(/[\r\n]+/).filter(Boolean);
    const n = Number(parts[parts.length - 1]);
    if (Number.isInteger(n) && n > count) {
      count = n;
      last = performance.now();
    }
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-8192)));
  const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => resolve(c));
  }).finally(() => clearTimeout(timer));
  // the run lasts until the last counted message (the QUITs after it and process exit are left out)
  const replied = count ? last : performance.now();
  const undelivered = o.untilDelivered ? await o.untilDelivered() : undefined;
  const end = o.untilDelivered ? performance.now() : replied;
  const server = sampler?.stop();
  const errors: Record<string, number> = {};
  for (const line of stderr.split('\n')) {
    if (!/fatal:|warning:/.test(line)) continue;
    const reply = / (\d{3})[ -]/.exec(line);
    const key = reply ? `smtp-source ${reply[1]}` : `smtp-source ${line.replace(/^.*?(fatal|warning): /, '$1: ').slice(0, 80)}`;
    errors[key] = (errors[key] ?? 0) + 1;
  }
  if (code === null) errors.timeout = o.messages - count;
  else if (code !== 0 && Object.keys(errors).length === 0) errors[`smtp-source exit ${code}`] = 1;
  if (undelivered) errors['not delivered'] = undelivered;
  const seconds = Math.max(end - t0, 1) / 1000;
  const receiveSeconds = Math.max(replied - t0, 1) / 1000;
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  return {
    accepted: count,
    failed: o.messages - count,
    seconds: r2(seconds),
    msgPerSec: r2(count / seconds),
    receiveSeconds: r2(receiveSeconds),
    receiveMsgPerSec: r2(count / receiveSeconds),
    ...(o.untilDelivered ? { drainMs: r2(end - replied), undelivered } : {}),
    mbPerSec: r2((count * o.size) / seconds / 1e6),
    latencyMs: none,
    envelopeMs: none,
    greetingMs: none,
    errors,
    warnings: {},
    connections: o.perConnection > 1 ? o.sessions : count,
    server: server && { ...server, cpuSecPer1k: count ? r2((server.cpuSeconds * 1000) / count) : 0 },
    clientLagMs: { p99: 0, max: 0 },
  };
}
