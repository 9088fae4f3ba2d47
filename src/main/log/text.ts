/**
 * The text format: `TIME LEVEL TEXT`, one line each, as the queue commands
 * print (src/core/log.ts). A pino destination that reads what pino hands
 * every metadata stream (the level, the time it stamped, the text) instead of
 * parsing the JSON line, and writes through pino's asynchronous stderr
 * destination: no synchronous write per line on the main thread.
 */
/** Marks a pino destination that is told each line's level, time and text before it is written. */
export const PINO_METADATA: unique symbol = Symbol.for('pino.metadata') as never;

const LABEL: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

export interface LineSink {
  write(chunk: string): unknown;
}

export class TextStream {
  readonly [PINO_METADATA] = true;
  lastLevel = 30;
  lastMsg: string | undefined;
  /** pino's time fragment: the ISO time in JSON quotes (`"2026-…Z"`). */
  lastTime = '';

  constructor(private readonly out: LineSink) {}

  write(_json: string): void {
    const t = this.lastTime;
    const time = t.charCodeAt(0) === 34 ? t.slice(1, -1) : new Date().toISOString();
    this.out.write(`${time} ${LABEL[this.lastLevel] ?? this.lastLevel} ${this.lastMsg ?? ''}\n`);
  }
}
