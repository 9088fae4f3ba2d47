/**
 * smtp-receive: the public API.
 *
 * Receiver modules import this file in every worker thread, so it loads only
 * the light core; the server, the test harness, the listing and the queue
 * runner are loaded on first use.
 */
// lmdb-js is patched at run time before any queue store opens (src/patch/lmdb.ts; throws if it cannot be)
import './patch/lmdb.ts';
import type { Writable } from 'node:stream';
import type { ServeOptions } from './main/options.ts';
import type { RunningServer } from './main/server.ts';
import type { RunQueueOptions, RunQueueResult } from './main/runqueue.ts';
import type { ShowOptions } from './main/showqueue.ts';
import type { OpResult } from './core/queue-ops.ts';
import type { ListQueueOptions } from './main/showqueue.ts';
import type { TestServer } from './testing.ts';

export { Receiver } from './core/receiver.ts';
export { Message } from './core/message.ts';
export { SmtpReply, Replies, parseReply, toReply, type ReplyData } from './core/reply.ts';
export type {
  ClientInfo, SessionInfo, MessageFields, MessageSnapshot, MessageBody, MailFromVerdict, RcptVerdict, ReceiverConfig,
  FailedRecipient, AuthCredentials, AuthVerdict, TlsInfo,
} from './core/types.ts';
export type { AuthResult, AuthenticationVerdict, MessageAuth } from './core/auth.ts';
export { failRecipient } from './core/failures.ts';
// the built-in receivers: light modules (the relay loads nodemailer only when it delivers)
export { MaildirReceiver, maildirFolder, type MaildirOptions } from './receivers/maildir.ts';
export { WebhookReceiver, type WebhookOptions } from './receivers/webhook.ts';
export { RelayReceiver, type RelayOptions } from './receivers/relay.ts';
export {
  verifyWebhookSignature, readWebhookEnvelope, WEBHOOK_HEADERS, type HeaderSource, type VerifyOptions, type WebhookEnvelope,
} from './receivers/webhook-signature.ts';
export { ReceiverOptionError } from './receivers/options.ts';
export type { BuiltinReceiver } from './receivers/index.ts';
export { QueueStore, QueueNotOwned, type QueueRecord } from './core/store.ts';
export { QueueLock, QueueLocked } from './core/lock.ts';
export type { ServeOptions, RunningServer, TestServer, ShowOptions, ListQueueOptions, RunQueueOptions, RunQueueResult, OpResult };
export type { RunSummary } from './main/runner.ts';

/** Starts the receiving daemon (what `smtp-receive serve` runs). */
export async function startServer(options: ServeOptions = {}): Promise<RunningServer> {
  return (await import('./main/server.ts')).startServer(options);
}

/**
 * A receiver on 127.0.0.1, a free port and a temporary queue, for your tests; `stop()` removes the queue.
 * Without `receiverPath` or `builtin` it delivers nothing: accepted messages stay queued for the test to read.
 */
export async function startTestServer(options: ServeOptions & { keepQueue?: boolean } = {}): Promise<TestServer> {
  return (await import('./testing.ts')).startTestServer(options);
}

/*
 * The queue commands as functions. Each takes a queue directory and goes
 * through the daemon's control socket when a daemon owns the queue, else
 * opens the queue itself (holding its lock meanwhile): same results either way.
 */

/** Writes the queue listing (mailq text, or postqueue -j JSON Lines); returns the ids asked for that are missing. */
export async function showQueue(queueDir: string, out: Writable, options: ListQueueOptions = {}): Promise<string[]> {
  return (await import('./main/showqueue.ts')).listQueue(queueDir, out, options);
}

/** One delivery pass over a queue (what `smtp-receive runqueue` does). */
export async function runQueue(options: RunQueueOptions): Promise<RunQueueResult> {
  return (await import('./main/runqueue.ts')).runQueue(options);
}

async function op(queueDir: string, name: 'flush' | 'delete' | 'hold' | 'release' | 'requeue', ids?: string[] | 'ALL'): Promise<OpResult> {
  return (await import('./main/queue-commands.ts')).queueOp(queueDir, name, ids);
}

/** Makes every queued (not held) message due now (postqueue -f). */
export const flush = (queueDir: string): Promise<OpResult> => op(queueDir, 'flush');
/** Removes messages (postsuper -d). */
export const deleteMessages = (queueDir: string, ids: string[] | 'ALL'): Promise<OpResult> => op(queueDir, 'delete', ids);
/** Keeps messages from delivery until released (postsuper -h). */
export const hold = (queueDir: string, ids: string[] | 'ALL'): Promise<OpResult> => op(queueDir, 'hold', ids);
/** Releases held messages, due at once (postsuper -H). */
export const release = (queueDir: string, ids: string[] | 'ALL'): Promise<OpResult> => op(queueDir, 'release', ids);
/** Due now with a fresh attempt count and lifetime (postsuper -r). */
export const requeue = (queueDir: string, ids: string[] | 'ALL'): Promise<OpResult> => op(queueDir, 'requeue', ids);
