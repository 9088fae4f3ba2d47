/**
 * A real Prometheus (Debian's /usr/bin/prometheus: its own config and
 * temporary storage, a 1 s scrape interval, loopback only) scrapes a `serve`
 * daemon under SMTP traffic; then every query of grafana/*.json, its Grafana
 * variables replaced, goes through Prometheus's HTTP API: each one parses and
 * returns data. Prometheus is stopped by its pid in `finally`.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { spawnCli, type CliProcess } from './helpers/cli.ts';
import { dashboardQueries, resolveVariables, variableQueries } from './helpers/dashboard.ts';
import { until } from './helpers/metrics.ts';
import { RawClient } from './helpers/smtp.ts';

const PROMETHEUS = '/usr/bin/prometheus';
const RECEIVER = fileURLToPath(new URL('./fixtures/metrics-gate.ts', import.meta.url));
const BODY = 'Subject: hi\r\n\r\nhello\r\n';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

interface PromResult {
  status: string;
  errorType?: string;
  error?: string;
  data?: { resultType: string; result: unknown[] } | string[];
}

async function api(port: number, path: string, params: Record<string, string>): Promise<PromResult> {
  const res = await fetch(`http://127.0.0.1:${port}${path}?${new URLSearchParams(params)}`, { signal: AbortSignal.timeout(10_000) });
  return await res.json() as PromResult;
}

/**
 * One round of traffic: queued, deferred, refused at RCPT and at predeliver, a predeliver past its time
 * limit (4xx), and a second connection refused (--max-clients 1).
 */
async function traffic(port: number): Promise<void> {
  const c = await RawClient.ready(port);
  try {
    const second = await RawClient.connect(port);
    await second.readUntilClosed();
    await second.quit();
    await c.send('a@example.org', ['ok@localhost'], BODY);
    await c.send('b@example.org', ['defer@localhost'], BODY);
    await c.envelope('c@example.org', ['nobody@localhost']);
    await c.command('RSET');
    await c.send('spam@example.org', ['ok@localhost'], BODY);
    await c.send('hang@example.org', ['ok@localhost'], BODY);
  } finally {
    await c.quit();
  }
}

it('a real Prometheus scrapes the daemon, and answers every query of the Grafana dashboard', async (t) => {
  if (spawnSync(PROMETHEUS, ['--version']).status !== 0) return t.skip(`${PROMETHEUS} is not installed (Debian package prometheus)`);
  const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-prom-'));
  let daemon: CliProcess | undefined;
  let prometheus: ChildProcess | undefined;
  let promLog = '';
  try {
    daemon = spawnCli(['serve', '--listen', '127.0.0.1:0', '--queue', join(dir, 'queue'), '--no-reverse-dns', '--workers', '1',
      '--receiver', RECEIVER, '--predeliver-timeout', '1000', '--retry-min', '600000', '--max-clients', '1', '--metrics', '127.0.0.1:0']);
    const { port } = await daemon.ready(60_000);
    const metrics = /metrics on http:\/\/([\d.]+:\d+)\/metrics/.exec(daemon.stdout)?.[1];
    assert.ok(metrics, `the metrics address in: ${daemon.stdout}`);

    const promPort = await freePort();
    await writeFile(join(dir, 'prometheus.yml'), [
      'global:', '  scrape_interval: 1s', '  scrape_timeout: 1s', '  evaluation_interval: 1s',
      'scrape_configs:', '  - job_name: smtp-receive', '    static_configs:', `      - targets: ['${metrics}']`, '',
    ].join('\n'));
    prometheus = spawn(PROMETHEUS, [
      `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${promPort}`, '--storage.tsdb.retention.time=1h', '--log.level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    prometheus.stderr!.setEncoding('utf8').on('data', (d: string) => { promLog = (promLog + d).slice(-20_000); });
    await until(async () => (await fetch(`http://127.0.0.1:${promPort}/-/ready`).catch(() => undefined))?.ok, `prometheus ready: ${promLog}`, 60_000);

    // traffic over a few scrapes, so counters have several samples and rate() a window
    for (let round = 0; round < 3; round++) {
      await traffic(port);
      await new Promise((r) => setTimeout(r, 1500));
    }
    const target = await until(async () => {
      const r = await api(promPort, '/api/v1/query', { query: 'up{job="smtp-receive"}' });
      const res = (r.data as { result: Array<{ value: [number, string] }> } | undefined)?.result;
      return res?.[0]?.value[1] === '1' ? res : undefined;
    }, 'the target to be up', 30_000);
    assert.equal(target.length, 1);

    const queries = dashboardQueries();
    assert.ok(queries.length >= 25, `${queries.length} queries`);
    const missing = new Map<string, string>();
    await until(async () => {
      missing.clear();
      for (const q of queries) {
        const expr = resolveVariables(q.expr);
        const r = await api(promPort, '/api/v1/query', { query: expr });
        // a query that does not parse fails at once: no waiting helps
        assert.equal(r.status, 'success', `${q.panel}: ${expr}: ${r.errorType}: ${r.error}`);
        const data = r.data as { result: unknown[] };
        if (data.result.length === 0) missing.set(`${q.panel}: ${expr}`, 'no data');
      }
      for (const v of variableQueries()) {
        const r = await api(promPort, `/api/v1/label/${v.label}/values`, { 'match[]': v.metric });
        assert.equal(r.status, 'success', `variable label_values(${v.metric}, ${v.label}): ${r.error}`);
        if ((r.data as string[]).length === 0) missing.set(`label_values(${v.metric}, ${v.label})`, 'no values');
      }
      // one more round now and then, for windows that have slid past the traffic on a slow machine
      if (missing.size > 0) await traffic(port);
      return missing.size === 0;
    }, 'every query to return data', 90_000).catch((err: Error) => {
      throw new Error(`${err.message}:\n${[...missing.keys()].join('\n')}`);
    });
  } finally {
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((r) => prometheus!.once('exit', r));
      process.kill(prometheus.pid!, 'SIGTERM');
      const hard = setTimeout(() => { if (prometheus!.exitCode === null) process.kill(prometheus!.pid!, 'SIGKILL'); }, 10_000);
      await exited;
      clearTimeout(hard);
    }
    await daemon?.kill();
    await rm(dir, { recursive: true, force: true });
  }
});
