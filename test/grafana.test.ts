/**
 * grafana/: the committed dashboard is what grafana/dashboard.ts generates,
 * it is importable (a DS_PROMETHEUS input, every panel on the data source
 * variable), it names only metrics the daemon defines, and the provisioning
 * files point at it. (test/metrics-prometheus.test.ts runs its queries.)
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { dashboardJson } from '../grafana/dashboard.ts';
import { METRICS, PROCESS_METRICS } from '../src/main/metrics/definitions.ts';
import { GRAFANA_DIR, dashboardFiles, dashboardQueries, metricNames, variableQueries } from './helpers/dashboard.ts';

it('the committed dashboard is the generated one (npm run grafana)', () => {
  assert.equal(readFileSync(join(GRAFANA_DIR, 'smtp-receive.json'), 'utf8'), dashboardJson(), 'run npm run grafana and commit the JSON');
  assert.deepEqual(dashboardFiles().map((f) => f.slice(GRAFANA_DIR.length + 1)), ['smtp-receive.json']);
});

it('is importable: Grafana asks for the Prometheus data source, and every panel uses it', () => {
  const d = JSON.parse(dashboardJson()) as {
    __inputs: Array<{ name: string; type: string; pluginId: string }>;
    templating: { list: Array<{ name: string; type: string; current?: { value: string } }> };
    panels: Array<{ type: string; title: string; datasource?: { uid: string }; targets?: Array<{ datasource?: { uid: string } }> }>;
  };
  assert.deepEqual(d.__inputs.map((i) => [i.name, i.type, i.pluginId]), [['DS_PROMETHEUS', 'datasource', 'prometheus']]);
  const ds = d.templating.list.find((v) => v.type === 'datasource');
  assert.equal(ds?.current?.value, '${DS_PROMETHEUS}', 'the imported data source becomes the variable\'s value');
  const panels = d.panels.filter((p) => p.type !== 'row');
  assert.ok(panels.length >= 12, `${panels.length} panels`);
  for (const p of panels) {
    assert.equal(p.datasource?.uid, '${datasource}', p.title);
    for (const t of p.targets ?? []) assert.equal(t.datasource?.uid, '${datasource}', p.title);
  }
  const titles = panels.map((p) => p.title).join(' | ');
  for (const want of [/Throughput/, /Refusals by stage and reason/, /End of DATA → 250/, /Queue size/, /Oldest message/,
    /Delivery outcomes/, /Worker pool/, /Event-loop delay/, /memory/]) assert.match(titles, want);
});

it('names only metrics the daemon defines', () => {
  const known = new Set<string>([...Object.values(METRICS).map((m) => m.name), ...Object.values(PROCESS_METRICS)]);
  const used = new Set([...dashboardQueries().flatMap((q) => metricNames(q.expr)), ...variableQueries().map((v) => v.metric)]);
  assert.ok(used.size >= 20, `${used.size} metrics used`);
  assert.deepEqual([...used].filter((n) => !known.has(n)), []);
  for (const q of dashboardQueries()) assert.match(q.expr, /instance=~"\$instance"/, `${q.panel}: filtered by instance`);
});

it('provisioning: a Prometheus data source and a file provider', () => {
  const ds = readFileSync(join(GRAFANA_DIR, 'provisioning/datasources/prometheus.yaml'), 'utf8');
  assert.match(ds, /^apiVersion: 1$/m);
  assert.match(ds, /^\s+type: prometheus$/m);
  const dash = readFileSync(join(GRAFANA_DIR, 'provisioning/dashboards/smtp-receive.yaml'), 'utf8');
  assert.match(dash, /^\s+type: file$/m);
  assert.match(dash, /^\s+path: \S+$/m);
});
