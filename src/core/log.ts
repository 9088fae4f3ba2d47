/**
 * The log: one line per event. Without a sink installed, a plain line on
 * stderr (`TIME LEVEL TEXT`; the queue commands keep that). `serve` installs
 * its structured logger (src/main/log/: pino, text or JSON, syslog) as the
 * sink; a worker thread installs one that hands its lines to the main thread.
 * Internals (stacks, hook errors) go here, never to SMTP clients.
 */
import { format } from 'node:util';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** A structured line's data: `event` names what happened (queued, rejected, delivered …), `id` the message. */
export interface LogFields {
  event?: string;
  id?: string;
  [field: string]: unknown;
}

/** Where lines go: the level, the text as a person reads it, and for a structured line its fields. */
export type LogSink = (level: LogLevel, line: string, fields?: LogFields) => void;

/** What was thrown, for a log line: an error's stack (or message), anything else as text. */
export function stackOf(thrown: unknown): string {
  return thrown instanceof Error ? (thrown.stack ?? thrown.message) : String(thrown);
}

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export const isLogLevel = (v: unknown): v is LogLevel => typeof v === 'string' && v in RANK;

/** The level SMTP_RECEIVE_LOG asks for (info when unset or unknown). */
export function envLogLevel(): LogLevel {
  const v = process.env.SMTP_RECEIVE_LOG;
  return isLogLevel(v) ? v : 'info';
}

/** The plain line on stderr. */
export const stderrSink: LogSink = (level, line) => {
  process.stderr.write(`${new Date().toISOString()} ${level} ${line}\n`);
};

let sink: LogSink = stderrSink;
let level: LogLevel = envLogLevel();
let threshold = RANK[level];

/** Replaces where log lines go (serve's logger, a worker's hand-over); undefined: back to plain stderr. */
export function setLogSink(next: LogSink | undefined): void {
  sink = next ?? stderrSink;
}

export function setLogLevel(next: LogLevel): void {
  level = next;
  threshold = RANK[next];
}

export function getLogLevel(): LogLevel {
  return level;
}

function emit(lv: LogLevel, args: unknown[]): void {
  if (RANK[lv] < threshold) return;
  sink(lv, format(...args));
}

export const log = {
  debug: (...args: unknown[]): void => emit('debug', args),
  info: (...args: unknown[]): void => emit('info', args),
  warn: (...args: unknown[]): void => emit('warn', args),
  error: (...args: unknown[]): void => emit('error', args),
  /** A structured line: `fields` for JSON and syslog, `line` as a person reads it (the text format). */
  event: (lv: LogLevel, fields: LogFields, line: string): void => {
    if (RANK[lv] >= threshold) sink(lv, line, fields);
  },
  enabled: (lv: LogLevel): boolean => RANK[lv] >= threshold,
};
