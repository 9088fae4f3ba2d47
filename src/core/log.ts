/**
 * The log: one line per event on stderr (or a sink the daemon installs, e.g. syslog).
 * Internals (stacks, hook errors) go here, never to SMTP clients.
 */
import { format } from 'node:util';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogSink = (level: LogLevel, line: string) => void;

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

let sink: LogSink = (level, line) => {
  process.stderr.write(`${new Date().toISOString()} ${level} ${line}\n`);
};
let threshold = RANK[(process.env.SMTP_RECEIVE_LOG as LogLevel) in RANK ? (process.env.SMTP_RECEIVE_LOG as LogLevel) : 'info'];

/** Replaces where log lines go (the daemon's syslog option, tests). */
export function setLogSink(next: LogSink): void {
  sink = next;
}

export function setLogLevel(level: LogLevel): void {
  threshold = RANK[level];
}

function emit(level: LogLevel, args: unknown[]): void {
  if (RANK[level] < threshold) return;
  sink(level, format(...args));
}

export const log = {
  debug: (...args: unknown[]): void => emit('debug', args),
  info: (...args: unknown[]): void => emit('info', args),
  warn: (...args: unknown[]): void => emit('warn', args),
  error: (...args: unknown[]): void => emit('error', args),
  enabled: (level: LogLevel): boolean => RANK[level] >= threshold,
};
