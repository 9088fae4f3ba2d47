/**
 * The smtp-receive Grafana dashboard, built with Grafana's own Foundation SDK
 * from the metric names of src/main/metrics/definitions.ts, so that it cannot
 * name a metric the daemon does not expose. `npm run grafana` (grafana/generate.ts)
 * writes it to grafana/smtp-receive.json; a test checks the file is up to date
 * and that a real Prometheus answers every query in it.
 *
 * Importable (Dashboards → New → Import): the `__inputs` entry DS_PROMETHEUS
 * makes Grafana ask for the Prometheus data source. Provisioned (grafana/provisioning/),
 * the `datasource` variable falls back to the default Prometheus data source.
 */
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import { DataqueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus';
import { PanelBuilder as TimeSeries } from '@grafana/grafana-foundation-sdk/timeseries';
import { METRICS as M, PROCESS_METRICS as P } from '../src/main/metrics/definitions.ts';

const DS = { type: 'prometheus', uid: '${datasource}' };
/** Every series is filtered by the instance variable. */
const SEL = 'instance=~"$instance"';

const q = (expr: string, legend: string): DataqueryBuilder =>
  new DataqueryBuilder().datasource(DS).expr(expr).legendFormat(legend).range();

const rate = (name: string, extra = ''): string => `rate(${name}{${SEL}${extra}}[$__rate_interval])`;
const quantile = (phi: number, name: string, by = ''): string =>
  `histogram_quantile(${phi}, sum by (le${by}) (${rate(`${name}_bucket`)}))`;

function panel(title: string, unit: string, description: string, targets: DataqueryBuilder[], width = 12): TimeSeries {
  const p = new TimeSeries().title(title).description(description).unit(unit).datasource(DS).height(8).span(width)
    .fillOpacity(10).lineWidth(1).min(0);
  for (const t of targets) p.withTarget(t);
  return p;
}

export function buildDashboard(): Record<string, unknown> {
  const d = new dashboard.DashboardBuilder('smtp-receive')
    .uid('smtp-receive')
    .description('Mail in, acceptance and rejection, the queue, deliveries, the worker pool and the process of smtp-receive daemons.')
    .tags(['smtp-receive', 'smtp'])
    .refresh('30s')
    .time({ from: 'now-1h', to: 'now' })
    .timezone('browser')
    .tooltip(dashboard.DashboardCursorSync.Crosshair)
    .withVariable(new dashboard.DatasourceVariableBuilder('datasource').label('Data source').type('prometheus')
      .current({ text: '${DS_PROMETHEUS}', value: '${DS_PROMETHEUS}' }))
    .withVariable(new dashboard.QueryVariableBuilder('instance').label('Instance').datasource(DS)
      .query({ query: `label_values(${M.connections.name}, instance)`, refId: 'instance' })
      .definition(`label_values(${M.connections.name}, instance)`)
      .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
      .multi(true).includeAll(true).allValue('.+').sort(dashboard.VariableSort.AlphabeticalAsc));

  d.withRow(new dashboard.RowBuilder('Mail in'));
  d.withPanel(panel('Throughput', 'ops', 'Messages queued (250 after DATA), refused (5xx) and temporarily failed (4xx), and sessions, per second.', [
    q(`sum(${rate(M.accepted.name)})`, 'accepted'),
    q(`sum(${rate(M.rejected.name)})`, 'rejected (5xx)'),
    q(`sum(${rate(M.tempFailed.name)})`, 'temporarily failed (4xx)'),
    q(`sum(${rate(M.connections.name)})`, 'sessions'),
  ]));
  d.withPanel(panel('Refusals by stage and reason', 'ops', 'Refusals per second by SMTP stage and reason (a refused recipient counts at stage rcpt).', [
    q(`sum by (stage, reason) (${rate(M.rejected.name)})`, '5xx {{stage}}: {{reason}}'),
    q(`sum by (stage, reason) (${rate(M.tempFailed.name)})`, '4xx {{stage}}: {{reason}}'),
  ]));
  d.withPanel(panel('End of DATA → 250', 's', 'Time from the client\'s final dot to the 250: predeliver, fsync and the LMDB commit.', [
    q(quantile(0.5, M.eodToReply.name), 'p50'),
    q(quantile(0.99, M.eodToReply.name), 'p99'),
    q(quantile(0.99, M.commit.name), 'LMDB commit p99'),
  ]));
  d.withPanel(panel('Connections', 'short', 'Sessions open now, and connections refused per second by reason.', [
    q(`sum(${M.connectionsActive.name}{${SEL}})`, 'active'),
    q(`sum by (reason) (${rate(M.connectionsRefused.name)})`, 'refused/s: {{reason}}'),
  ]));
  d.withPanel(panel('SMTP replies', 'ops', 'Replies per second by class.', [
    q(`sum by (class) (${rate(M.replies.name)})`, '{{class}}'),
  ]));
  d.withPanel(panel('Bytes received and message size', 'bytes', 'Bytes queued per second; median and p99 message size.', [
    q(`sum(${rate(M.receivedBytes.name)})`, 'bytes/s'),
    q(quantile(0.5, M.messageSize.name), 'size p50'),
    q(quantile(0.99, M.messageSize.name), 'size p99'),
  ]));

  d.withRow(new dashboard.RowBuilder('Queue and delivery'));
  d.withPanel(panel('Queue size', 'short', 'Messages in the queue by state; due now (the runner\'s backlog); being delivered.', [
    q(`sum by (state) (${M.queueMessages.name}{${SEL}})`, '{{state}}'),
    q(`sum(${M.queueDue.name}{${SEL}})`, 'due now'),
    q(`sum(${M.queueLeases.name}{${SEL}})`, 'being delivered'),
  ]));
  d.withPanel(panel('Oldest message in the queue', 's', 'Age of the oldest queued message.', [
    q(`max(${M.queueOldestAge.name}{${SEL}})`, 'oldest'),
  ]));
  d.withPanel(panel('Delivery outcomes', 'ops', 'Delivery attempts per second by outcome.', [
    q(`sum by (outcome) (${rate(M.deliveries.name)})`, '{{outcome}}'),
  ]));
  d.withPanel(panel('Hook times', 's', 'p99 of deliver and predeliver (worker queue wait included), and the p50 time in the queue of delivered messages.', [
    q(quantile(0.99, M.deliveryDuration.name), 'deliver p99'),
    q(quantile(0.99, M.predeliver.name), 'predeliver p99'),
    q(quantile(0.5, M.deliveredQueueTime.name), 'time in queue p50'),
  ]));

  d.withRow(new dashboard.RowBuilder('Process'));
  d.withPanel(panel('Worker pool', 'percentunit', 'Utilisation (busy time ÷ threads), tasks waiting, and the mean wait for a worker.', [
    q(`sum(${rate(M.workerBusy.name)}) / sum(${M.workerThreads.name}{${SEL}, state="configured"})`, 'utilisation'),
    q(`sum(${M.workerQueue.name}{${SEL}})`, 'tasks waiting'),
    q(`sum(${rate(M.workerWait.name)}) / sum(${rate(M.workerTasks.name)})`, 'mean wait (s)'),
  ], 8)
    .overrideByName('tasks waiting', [{ id: 'unit', value: 'short' }, { id: 'custom.axisPlacement', value: 'right' }])
    .overrideByName('mean wait (s)', [{ id: 'unit', value: 's' }, { id: 'custom.axisPlacement', value: 'right' }]));
  d.withPanel(panel('Event-loop delay', 's', 'Main-thread event-loop delay between scrapes (perf_hooks.monitorEventLoopDelay).', [
    q(`max(${P.eventLoopP99}{${SEL}})`, 'p99'),
    q(`max(${P.eventLoopP50}{${SEL}})`, 'p50'),
  ], 8));
  d.withPanel(panel('Process memory and CPU', 'bytes', 'Resident memory, JavaScript heap in use, and CPU (right axis: cores).', [
    q(`sum(${P.residentMemory}{${SEL}})`, 'resident'),
    q(`sum(${P.heapUsed}{${SEL}})`, 'heap used'),
    q(`sum(${rate(P.cpu)})`, 'CPU (cores)'),
  ], 8).overrideByName('CPU (cores)', [{ id: 'unit', value: 'short' }, { id: 'custom.axisPlacement', value: 'right' }]));

  return {
    __inputs: [{
      name: 'DS_PROMETHEUS', label: 'Prometheus', description: 'The Prometheus that scrapes smtp-receive',
      type: 'datasource', pluginId: 'prometheus', pluginName: 'Prometheus',
    }],
    __requires: [
      { type: 'grafana', id: 'grafana', name: 'Grafana', version: '10.0.0' },
      { type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' },
      { type: 'panel', id: 'timeseries', name: 'Time series', version: '' },
    ],
    ...(d.build() as unknown as Record<string, unknown>),
  };
}

/** The JSON as committed (stable key order from the builder, two-space indent, final newline). */
export function dashboardJson(): string {
  return `${JSON.stringify(buildDashboard(), null, 2)}\n`;
}
