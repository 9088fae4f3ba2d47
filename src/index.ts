/**
 * smtp-receive: the public API.
 *
 * Receiver modules import this file in every worker thread, so it loads only
 * the light core; the server, the test harness, the listing and the queue
 * runner are loaded on first use.
 */
import type { Writable } from 'node:stream';
import type { ServeOptions } from './main/options.ts';
import type { RunningServer } from './main/server.ts';
import type { RunQueueOptions, RunQueueResult } from './main/runqueue.ts';
import type { ShowOptions } from './main/showqueue.ts';
import type { QueueStore } from './core/store.ts';
import type { TestServer } from './testing.ts';

export { Receiver } from './core/receiver.ts';
export { Message } from './core/message.ts';
export { SmtpReply, Replies, parseReply, toReply, type ReplyData } from './core/reply.ts';
export type {
  ClientInfo, SessionInfo, MessageFields, MessageSnapshot, MessageBody, MailFromVerdict, RcptVerdict, ReceiverConfig,
} from './core/types.ts';
export { QueueStore, type QueueRecord } from './core/store.ts';
export { flush, deleteMessages, hold, release, requeue, type OpResult } from './core/queue-ops.ts';
export type { ServeOptions, RunningServer, TestServer, ShowOptions, RunQueueOptions, RunQueueResult };
export type { RunSummary } from './main/runner.ts';

/** Starts the receiving daemon (what `smtp-receive serve` runs). */
export async function startServer(options: ServeOptions = {}): Promise<RunningServer> {
  return (await import('./main/server.ts')).startServer(options);
}

/** A receiver on 127.0.0.1, a free port and a temporary queue, for your tests; `stop()` removes the queue. */
export async function startTestServer(options: ServeOptions & { keepQueue?: boolean } = {}): Promise<TestServer> {
  return (await import('./testing.ts')).startTestServer(options);
}

/** Writes the queue listing (mailq text, or postqueue -j JSON Lines); returns the ids asked for that are missing. */
export async function showQueue(store: QueueStore, out: Writable, options: ShowOptions = {}): Promise<string[]> {
  return (await import('./main/showqueue.ts')).showQueue(store, out, options);
}

/** One delivery pass over a queue (what `smtp-receive runqueue` does). */
export async function runQueue(options: RunQueueOptions): Promise<RunQueueResult> {
  return (await import('./main/runqueue.ts')).runQueue(options);
}
