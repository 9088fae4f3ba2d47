/** serve's log options (and the receiver's doSyslog()) → the logger (logger.ts). */
import { log } from '../../core/log.ts';
import type { Receiver } from '../../core/receiver.ts';
import type { ResolvedOptions } from '../options.ts';
import type { Logging } from './logger.ts';
import { FACILITIES, parseSyslogTarget } from './syslog-target.ts';

/**
 * Syslog is on with `syslog` (HOST:PORT or a socket path) or when the receiver's doSyslog() says so
 * (to /dev/log, unless `syslog` says where).
 */
export async function startServerLogging(opts: ResolvedOptions, receiver: Receiver): Promise<Logging> {
  // loaded here, not with the CLI: the queue commands (and a mistyped flag) do without pino
  const { startLogging } = await import('./logger.ts');
  const target = opts.syslog !== undefined ? parseSyslogTarget(opts.syslog) : receiver.doSyslog() ? 'local' : undefined;
  const logging = await startLogging({
    format: opts.logFormat, level: opts.logLevel, stream: opts.logStream, syslog: target, facility: FACILITIES[opts.syslogFacility]!,
  });
  if (logging.syslog) log.debug('logging to syslog too: %s, facility %s', logging.syslog, opts.syslogFacility);
  return logging;
}
