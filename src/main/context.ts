/** What the SMTP handlers share: the receiver, options, queue, pool — and per-session state. */
import type { SMTPServerSession } from 'smtp-server';
import type { Receiver } from '../core/receiver.ts';
import { events, type RejectStage } from '../core/events.ts';
import { toReply, toServerError, type SmtpReply } from '../core/reply.ts';
import { log, stackOf } from '../core/log.ts';
import type { DirSyncer } from '../core/spool.ts';
import type { QueueStore } from '../core/store.ts';
import type { ClientInfo } from '../core/types.ts';
import type { ResolvedOptions } from './options.ts';
import type { WorkerPool } from './pool.ts';
import type { QueueRunner } from './runner.ts';

export interface Context {
  receiver: Receiver;
  opts: ResolvedOptions;
  queueDir: string;
  store: QueueStore;
  pool: WorkerPool;
  /** Present when this process delivers (the receiver has deliver()). */
  runner: QueueRunner | undefined;
  spoolSync: DirSyncer;
  maxRecipients: number;
  maxDataLength: number;
  addEnvelope: boolean;
  /** Which hooks the receiver overrides (the others are skipped or run inline). */
  hooks: { checkAccess: boolean; checkMailFrom: boolean; checkRcptTo: boolean; predeliver: boolean };
}

/** Per-connection state, kept off smtp-server's session object. */
export const clients = new WeakMap<SMTPServerSession, ClientInfo>();

/** Per-connection counts for the session's end event. */
export interface SessionStats {
  /** performance.now() at connect. */
  start: number;
  queued: number;
  rejected: number;
}
export const sessionStats = new WeakMap<SMTPServerSession, SessionStats>();

/** Per-transaction recipients (after redirects), keyed by the transaction's envelope object. */
export const transactions = new WeakMap<object, { to: string[] }>();

export class HookTimeout extends Error {
  constructor(hook: string, ms: number) {
    super(`${hook} ran past its time limit of ${ms} ms`);
    this.name = 'HookTimeout';
  }
}

/** Runs a main-thread hook under a time limit. */
export function limited<T>(hook: string, ms: number, run: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HookTimeout(hook, ms)), ms);
  });
  return Promise.race([run(), timeout]).finally(() => clearTimeout(timer));
}

/** Turns what a hook threw into a reply; internal failures are logged with their stack, never shown. */
export function replyFor(thrown: unknown, where: string, fallback?: SmtpReply): SmtpReply {
  const { reply, internal } = toReply(thrown, fallback);
  if (internal) log.error('%s failed: %s', where, stackOf(thrown));
  return reply;
}

/** The event label of what a hook threw: a refusal of the receiver's, a time limit, or an internal error. */
export function reasonOf(thrown: unknown): string {
  if (thrown instanceof HookTimeout) return 'hook-timeout';
  return toReply(thrown).internal ? 'hook-error' : 'receiver';
}

/**
 * A refusal to send to the client: counted for the session and published (metrics, logs),
 * then in the shape smtp-server's callbacks take.
 */
export function refuse(
  stage: RejectStage, reason: string, reply: SmtpReply, session: SMTPServerSession,
  extra?: { to?: string | string[]; id?: string },
): Error {
  const stats = sessionStats.get(session);
  if (stats) stats.rejected++;
  if (events.rejected.hasSubscribers) {
    events.rejected.publish({
      stage, reason, code: reply.code, reply: `${reply.code} ${reply.line}`,
      sessionId: session.id, remoteAddress: session.remoteAddress,
      from: session.envelope?.mailFrom ? session.envelope.mailFrom.address : undefined, ...extra,
    });
  }
  return toServerError(reply);
}
