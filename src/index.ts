/** smtp-receive: the public API. */
export { Receiver } from './core/receiver.ts';
export { Message } from './core/message.ts';
export { SmtpReply, Replies, parseReply, toReply, type ReplyData } from './core/reply.ts';
export type {
  ClientInfo, SessionInfo, MessageFields, MessageSnapshot, MessageBody, MailFromVerdict, RcptVerdict, ReceiverConfig,
} from './core/types.ts';
export { QueueStore, type QueueRecord } from './core/store.ts';
export { startServer, type RunningServer } from './main/server.ts';
export type { ServeOptions } from './main/options.ts';
export { startTestServer, type TestServer } from './testing.ts';
export { flush, deleteMessages, hold, release, requeue, type OpResult } from './core/queue-ops.ts';
export { showQueue, type ShowOptions } from './main/showqueue.ts';
export { QueueRunner, type RunnerOptions, type RunSummary } from './main/runner.ts';
