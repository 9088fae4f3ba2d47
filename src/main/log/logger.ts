/**
 * serve's logger: pino, writing to stderr (asynchronously, through pino's own
 * destination) as text (`TIME LEVEL TEXT`) or JSON, and to syslog when asked.
 * Installed as the sink of src/core/log.ts, so every `log.*` line, the event
 * lines (event-lines.ts) and the workers' lines (worker-lines.ts) share one
 * logger and one format.
 *
 * One logger per process: a second server started while one runs shares the
 * first one's (its own log options are ignored); the last to close restores
 * the plain stderr log.
 */
import { existsSync } from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';
import { getLogLevel, log, setLogLevel, setLogSink, type LogLevel } from '../../core/log.ts';
import { subscribeEventLines } from './event-lines.ts';
import type { SyslogStream } from './syslog.ts';
import { DEV_LOG, describeSyslogTarget, type SyslogTarget } from './syslog-target.ts';
import { TextStream, type LineSink } from './text.ts';

export type LogFormat = 'json' | 'text';

export interface LoggingOptions {
  format: LogFormat;
  level: LogLevel;
  /** Where lines go instead of stderr (tests, embedding). */
  stream?: LineSink;
  /** Also send every line to syslog: to this target, or (`'local'`) to /dev/log when it exists. */
  syslog?: SyslogTarget | 'local';
  /** RFC 5424 facility code. */
  facility: number;
}

export interface Logging {
  /** Where syslog lines go, when they do. */
  syslog: string | undefined;
  close(): Promise<void>;
}

let shared: { users: number; logging: Logging } | undefined;

/** Log lines reach stderr within this many ms… */
const FLUSH_MS = 100;
/** …or once this many bytes wait. */
const BUFFER = 8 * 1024;

export async function startLogging(o: LoggingOptions): Promise<Logging> {
  if (shared) {
    shared.users++;
    return shared.logging;
  }
  let out: LineSink | undefined = o.stream;
  // syslog trouble goes straight to the stderr stream (the log would send it to syslog too)
  const trouble = (text: string): void => {
    out?.write(o.format === 'text' ? `${new Date().toISOString()} warn ${text}\n`
      : `${JSON.stringify({ level: 'warn', time: new Date().toISOString(), event: 'syslog', msg: text })}\n`);
  };
  let target = o.syslog;
  let note: string | undefined;
  if (target === 'local') {
    target = existsSync(DEV_LOG) ? { kind: 'unix', path: DEV_LOG } : undefined;
    if (!target) note = `doSyslog() is true, but ${DEV_LOG} does not exist (no local syslog daemon): logging to stderr only; send to a syslog daemon over UDP with --syslog HOST:PORT`;
  }
  let syslog: SyslogStream | undefined;
  if (target) {
    const { SyslogStream: Syslog } = await import('./syslog.ts');
    syslog = await Syslog.open(target, { facility: o.facility, onTrouble: trouble });
  }
  // lines gather in memory and are written every FLUSH_MS or once BUFFER bytes wait: one write
  // for many lines, not one per line (a SIGKILL loses at most those; an exit writes them first)
  const stderr = o.stream ? undefined : pino.destination({ fd: 2, sync: false, minLength: BUFFER, periodicFlush: FLUSH_MS });
  const onExit = (): void => { try { stderr?.flushSync(); } catch { /* stderr closed or the stream destroyed: nothing left to write to */ } };
  if (stderr) process.once('exit', onExit);
  out ??= stderr!;
  const first = o.format === 'text' ? new TextStream(out) : out;
  const destination: DestinationStream = syslog
    ? pino.multistream([{ level: 'debug', stream: first as DestinationStream }, { level: 'debug', stream: syslog }])
    : first as DestinationStream;
  // levels are filtered once, by src/core/log.ts: pino passes everything it is given
  const logger: Logger = pino({
    level: 'debug',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, destination);

  const previousLevel = getLogLevel();
  setLogLevel(o.level);
  setLogSink((level, line, fields) => {
    if (fields) logger[level](fields, line);
    else logger[level](line);
  });
  const unsubscribe = subscribeEventLines();
  if (note) log.warn('%s', note);

  const logging: Logging = {
    syslog: target ? describeSyslogTarget(target) : undefined,
    async close() {
      if (!shared || --shared.users > 0) return;
      shared = undefined;
      unsubscribe();
      setLogSink(undefined);
      setLogLevel(previousLevel);
      await syslog?.close();
      process.removeListener('exit', onExit);
      // pino's stderr destination: end() writes what is buffered and leaves fd 2 open
      if (stderr) await new Promise<void>((done) => { stderr.once('close', done); stderr.end(); });
    },
  };
  shared = { users: 1, logging };
  return logging;
}
