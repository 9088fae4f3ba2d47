/** The queries of the committed Grafana dashboards (grafana/*.json), for the tests. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './cli.ts';

export const GRAFANA_DIR = join(REPO_ROOT, 'grafana');

export interface DashboardQuery {
  file: string;
  panel: string;
  expr: string;
}

export function dashboardFiles(): string[] {
  return readdirSync(GRAFANA_DIR).filter((f) => f.endsWith('.json')).map((f) => join(GRAFANA_DIR, f));
}

/** Every panel target's PromQL (rows' nested panels included). */
export function dashboardQueries(): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  type Panel = { title?: string; targets?: Array<{ expr?: string }>; panels?: Panel[] };
  const walk = (file: string, panels: Panel[]): void => {
    for (const p of panels) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ file, panel: p.title ?? '', expr: t.expr });
      walk(file, p.panels ?? []);
    }
  };
  for (const file of dashboardFiles()) walk(file, (JSON.parse(readFileSync(file, 'utf8')) as { panels: Panel[] }).panels);
  return out;
}

/** The `label_values(METRIC, LABEL)` queries of the dashboards' variables. */
export function variableQueries(): Array<{ file: string; metric: string; label: string }> {
  const out: Array<{ file: string; metric: string; label: string }> = [];
  for (const file of dashboardFiles()) {
    const d = JSON.parse(readFileSync(file, 'utf8')) as { templating?: { list?: Array<{ type: string; query?: unknown }> } };
    for (const v of d.templating?.list ?? []) {
      if (v.type !== 'query') continue;
      const text = typeof v.query === 'string' ? v.query : (v.query as { query?: string }).query ?? '';
      const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(text);
      if (!m) throw new Error(`${file}: a variable query this test does not know: ${text}`);
      out.push({ file, metric: m[1]!, label: m[2]! });
    }
  }
  return out;
}

/** A query as Grafana sends it: its variables replaced. */
export function resolveVariables(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '30s')
    .replaceAll('$__interval', '5s')
    .replaceAll('$__range', '5m')
    .replaceAll('$instance', '.+');
}

/** The metric names a query uses (histogram series map to their histogram). */
export function metricNames(expr: string): string[] {
  const names = expr.match(/\b(?:smtp_receive|nodejs|process)_[a-z0-9_]+/g) ?? [];
  return [...new Set(names.map((n) => n.replace(/_(bucket|sum|count)$/, '')))];
}
