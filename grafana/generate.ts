/**
 * Writes grafana/smtp-receive.json from grafana/dashboard.ts:
 *   npm run grafana      (node --import tsx grafana/generate.ts)
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dashboardJson } from './dashboard.ts';

export const DASHBOARD_FILE = fileURLToPath(new URL('./smtp-receive.json', import.meta.url));

const isEntry = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isEntry) {
  writeFileSync(DASHBOARD_FILE, dashboardJson());
  process.stdout.write(`wrote ${DASHBOARD_FILE}\n`);
}
