/** What the SMTP handlers share: the receiver, options, queue, pool — and per-session state. */
import type { SMTPServerSession } from 'smtp-server';
import type { Receiver } from '../core/receiver.ts';
import { toReply, type SmtpReply } from '../core/reply.ts';
import { log } from '../core/log.ts';
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
  if (internal) log.error('%s failed: %s', where, thrown instanceof Error ? (thrown.stack ?? thrown.message) : String(thrown));
  return reply;
}
