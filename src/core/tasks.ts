/**
 * The messages between the main thread and the worker pool, in one place.
 * Only plain data crosses: a task carries a message snapshot (and, for a
 * predeliver before commit, the inline bytes); the worker answers with a
 * tagged result, never with a thrown error.
 */
import type { BuiltinReceiver } from '../receivers/index.ts';
import type { LogLevel } from './log.ts';
import type { MessageAuth, StoredHead } from './auth.ts';
import type { ReplyData } from './reply.ts';
import type { MessageSnapshot } from './types.ts';

export interface WorkerSetup {
  /** Receiver module to load (absolute path), or undefined for a built-in receiver. */
  receiverPath: string | undefined;
  /** The built-in receiver to run when there is no module (undefined: the base Receiver, which delivers nothing). */
  builtin?: BuiltinReceiver;
  queueDir: string;
  domains: string[];
  hostname: string;
  /** The owner's queue lock descriptor: workers adopt it to open the queue store (src/core/lock.ts). */
  lockFd: number;
  /** The main thread's log level (default: SMTP_RECEIVE_LOG's). */
  logLevel?: LogLevel;
  /** Authenticate each message (SPF, DKIM, DMARC, ARC) before predeliver; undefined: off. */
  auth?: AuthSettings;
}

/** How the workers authenticate messages (src/workers/auth.ts). */
export interface AuthSettings {
  /** DNS servers (`IP` or `IP:PORT`, `[IPv6]:PORT`); empty: the system's. */
  dnsServers: string[];
  /** Time limit of one DNS look-up, ms. */
  lookupTimeout: number;
  /** Time limit of all the look-ups of one message, ms. */
  messageTimeout: number;
  /** Refuse (550 5.7.1) a message that fails DMARC where the domain's policy is reject. */
  dmarcReject: boolean;
}

/**
 * Workers hand their log lines (`message.log`, hook failures) to the main thread's logger on this
 * BroadcastChannel (a worker cannot publish on the main thread's diagnostics_channel); each is a
 * `HookLogEvent` (src/core/events.ts).
 */
export const WORKER_LOG_CHANNEL = 'smtp-receive:worker-log';

export interface PredeliverTask {
  kind: 'predeliver';
  message: MessageSnapshot;
  /** The stored bytes of an inline body (not yet in LMDB at predeliver time). */
  inline?: Uint8Array;
  /** Length of our trace headers at the top of the stored bytes (authentication reads what follows). */
  traceLength: number;
}

export type PredeliverResult =
  /** With authentication on: the verdicts, and the head of the stored message that carries our header. */
  | { ok: true; auth?: MessageAuth; head?: StoredHead }
  /** `reason` labels a refusal of our own (e.g. 'dmarc') for events; a receiver's has none. */
  | { ok: false; reply: ReplyData; internal: false; reason?: string }
  /** The hook failed: `error` (with its stack) is for the log only. */
  | { ok: false; reply: ReplyData; internal: true; error: string };

/** One message of a delivery task. */
export interface DeliverItem {
  message: MessageSnapshot;
  /** Inline bodies are read from LMDB by the worker, unless `inline` carries them. */
  storage: 'inline' | 'file';
  /** The stored bytes of an inline body, when the main thread still has them (an attempt right after the commit). */
  inline?: Uint8Array;
  /** What authentication put in place of the first stored bytes (QueueRecord.head). */
  head?: StoredHead;
  /** Recipients already known to be delivered. */
  delivered: string[];
  /** Attempts before this one. */
  attempts: number;
}

/**
 * Delivery attempts for one or more messages (those the runner had ready at
 * the same moment: one message to the pool and one result back for several).
 * The worker runs them concurrently. An attempt that ends while others of
 * its batch still run comes back early, as a DeliverPartial the worker posts
 * on its own port (tagged with `batch`); from `reportAt` every outcome does,
 * so that a deliver that hangs (and has its worker ended at the time limit)
 * does not take its batch-mates' outcomes with it.
 */
export interface DeliverTask {
  kind: 'deliver';
  items: DeliverItem[];
  batch: string;
  /** Date.now() at which to report each outcome at once: a little before the task's time limit (set by the pool when a worker takes the task). */
  reportAt: number;
}

/** Outcomes of some of a delivery batch's attempts (see DeliverTask), posted by the worker before the task ends. */
export interface DeliverPartial {
  kind: 'deliver-partial';
  batch: string;
  /** [item index, outcome] */
  results: Array<[number, DeliverOutcome]>;
}

export function isDeliverPartial(m: unknown): m is DeliverPartial {
  return typeof m === 'object' && m !== null && (m as { kind?: unknown }).kind === 'deliver-partial';
}

export interface DeliverResult {
  ok: true;
  /** isDelivered(message) said yes (or deliver returned without throwing, when isDelivered is not overridden). */
  done: boolean;
  /** The message fields after the attempt (deliver may add or change them, `to` included); not when done. */
  message?: MessageSnapshot;
  /** Recipients known to be delivered after the attempt. */
  delivered: string[];
  /** What deliver threw, for `message.error`. */
  error?: string;
  /** Recipients failed for good (`message.failed`), when there are any: done, not delivered. */
  failed?: string[];
  /** A file exists at `message.textFile` (spooled, or an inline body written out by a hook). */
  textFileExists: boolean;
}

/** One message's outcome: the attempt's result, or what deliver's machinery threw (with its stack). */
export type DeliverOutcome = DeliverResult | { ok: false; error: string };

export interface ExpiredTask {
  kind: 'expired';
  message: MessageSnapshot;
  /** Delivery attempts made (the hook sees it as message.attempts). */
  attempts: number;
}

/** Start-up check: the worker loaded the receiver module. */
export interface PingTask {
  kind: 'ping';
}

export type Task = PredeliverTask | DeliverTask | ExpiredTask | PingTask;

/** What each task answers. */
export interface ResultOf {
  predeliver: PredeliverResult;
  deliver: { ok: true; results: DeliverOutcome[] };
  expired: { ok: true } | { ok: false; error: string };
  ping: { ok: true };
}

/** The pool could not run the task: full queue, time limit, or the worker died. */
export interface PoolFailure {
  ok: false;
  pool: 'busy' | 'timeout' | 'crashed';
  error: string;
}
