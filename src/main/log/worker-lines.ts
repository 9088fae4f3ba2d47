/**
 * The main thread's end of the workers' log lines: each one (`message.log`, a
 * hook's failure) goes to this thread's log — serve's structured logger, or
 * the plain stderr line of a queue command — and is published as the
 * `hookLog` event for any other subscriber. One listener per process,
 * whatever the number of pools; it does not keep the process alive.
 */
import { BroadcastChannel } from 'node:worker_threads';
import { events, type HookLogEvent } from '../../core/events.ts';
import { isLogLevel, log } from '../../core/log.ts';
import { WORKER_LOG_CHANNEL } from '../../core/tasks.ts';

let channel: BroadcastChannel | undefined;

export function receiveWorkerLogs(): void {
  if (channel) return;
  channel = new BroadcastChannel(WORKER_LOG_CHANNEL);
  channel.unref();
  channel.onmessage = (m: unknown) => {
    const line = (m as { data: HookLogEvent }).data;
    if (!line || !isLogLevel(line.level) || typeof line.text !== 'string') return;
    log.event(line.level, line.id ? { event: 'hook', id: line.id } : { event: 'worker' }, line.text);
    if (events.hookLog.hasSubscribers) events.hookLog.publish(line);
  };
}
