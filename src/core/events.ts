/**
 * What happens in the daemon, as events: the receive path, the runner and the
 * store publish them on `node:diagnostics_channel` channels, and metrics and
 * logs subscribe. A channel with no subscriber costs one property read
 * (`hasSubscribers`) at the publishing site, so the hot path pays nothing
 * when nothing listens; publish sites check it before building a payload.
 *
 * Payloads are plain data. Labels meant for metrics (`stage`, `reason`,
 * `outcome`) are drawn from small fixed sets; addresses and ids are there for
 * logs only and must never become metric labels.
 */
import { channel, type Channel } from 'node:diagnostics_channel';

/** Where in the SMTP dialogue a message or recipient was refused. */
export type RejectStage = 'connect' | 'helo' | 'mail' | 'rcpt' | 'data' | 'predeliver' | 'auth' | 'tls' | 'command';

export interface ConnectionEvent {
  sessionId: string;
  remoteAddress: string;
  remotePort: number;
}

export interface ConnectionRefusedEvent {
  /** Why: 'max-clients', 'per-client', 'access' (checkAccess said no), 'proxy' (a PROXY header was refused) … */
  reason: string;
  remoteAddress: string;
  /** The reply sent, when there was one (`421 4.7.0 …`). */
  reply?: string;
  /** A 'per-client' refusal that counted an IPv6 prefix (ipv6PrefixLength) as one client: that prefix (`2001:db8:1:2::/64`). */
  prefix?: string;
}

export interface SessionEndEvent {
  sessionId: string;
  remoteAddress: string;
  peerHost: string;
  helo: string;
  /** Milliseconds from connect to close. */
  durationMs: number;
  /** Messages queued (250 after DATA) in this session. */
  queued: number;
  /** Refusals (4xx/5xx to MAIL, RCPT, DATA) in this session. */
  rejected: number;
}

export interface ReplyEvent {
  /** The command answered ('EHLO', 'MAIL', 'RCPT', 'DATA' (the 354 and the final reply), 'CONNECT' (the greeting) …). */
  command: string;
  code: number;
}

export interface RejectedEvent {
  stage: RejectStage;
  /**
   * A short label from a fixed set: 'receiver' (a hook said no), 'hook-error', 'hook-timeout', 'too-many-recipients', 'bad-address', 'too-big', 'busy', 'storage', 'internal', 'dmarc' (--dmarc-reject) …;
   * limits: 'too-many-commands', 'too-many-bad-commands', 'too-many-auth-failures', 'idle-timeout', 'data-timeout', 'line-too-long';
   * syntax: 'unknown-parameter', 'utf8-without-smtputf8', 'bad-utf8', 'bad-bytes'
   */
  reason: string;
  code: number;
  /** The whole reply sent ("550 5.7.1 Relaying denied"). */
  reply: string;
  sessionId: string;
  remoteAddress: string;
  from?: string;
  /** The recipient refused (stage 'rcpt'), or the recipients of a refused message. */
  to?: string | string[];
  /** The message id, when the refusal came after DATA began. */
  id?: string;
}

export interface QueuedEvent {
  id: string;
  from: string;
  rcpts: number;
  /** Stored size in bytes (trace headers included). */
  size: number;
  storage: 'inline' | 'file';
  sessionId: string;
  remoteAddress: string;
  peerHost: string;
  /** Milliseconds from the end of DATA (the client's final dot) to the 250. */
  eodMs: number;
}

export interface PredeliverEvent {
  id: string;
  /** 'accept', 'reject' (the hook refused), 'error' (it failed), 'timeout', 'busy' (no worker free). */
  outcome: 'accept' | 'reject' | 'error' | 'timeout' | 'busy';
  /** Milliseconds from handing it to the pool to its answer (queue wait included). */
  ms: number;
}

export interface DeliveryEvent {
  id: string;
  /** 'delivered', 'deferred' (retried later), 'expired' (too old: on hold), 'error' (deliver threw an internal error or the worker failed; deferred too). */
  outcome: 'delivered' | 'deferred' | 'expired' | 'error';
  /** This attempt's number (1 for the first). */
  attempt: number;
  /** Milliseconds the attempt took (pool wait included). */
  ms: number;
  /** Milliseconds since the message was queued. */
  queuedMs: number;
  /** Why it was not delivered (deferred, expired, error). */
  reason?: string;
  /** When it is tried next (deferred). */
  nextAttempt?: number;
  /** Recipients failed for good (delivered: done, not delivered to these). */
  failed?: string[];
}

export interface CommitEvent {
  /** Milliseconds from the write to the transaction on disk (the group commit's flush). */
  ms: number;
}

/** A line a hook wrote with `message.log(...)` (from a worker thread). */
export interface HookLogEvent {
  id?: string;
  level: 'debug' | 'info' | 'warn' | 'error';
  text: string;
}

/** A channel whose payload type is known. */
export interface TypedChannel<T> extends Channel {
  publish(message: T): void;
}

const typed = <T>(name: string): TypedChannel<T> => channel(`smtp-receive:${name}`) as TypedChannel<T>;

export const events = {
  connection: typed<ConnectionEvent>('connection'),
  connectionRefused: typed<ConnectionRefusedEvent>('connection-refused'),
  sessionEnd: typed<SessionEndEvent>('session-end'),
  reply: typed<ReplyEvent>('reply'),
  rejected: typed<RejectedEvent>('rejected'),
  queued: typed<QueuedEvent>('queued'),
  predeliver: typed<PredeliverEvent>('predeliver'),
  delivery: typed<DeliveryEvent>('delivery'),
  commit: typed<CommitEvent>('commit'),
  hookLog: typed<HookLogEvent>('hook-log'),
} as const;

export type EventName = keyof typeof events;
export type EventOf<K extends EventName> = (typeof events)[K] extends TypedChannel<infer T> ? T : never;

/** Subscribes to one event; returns the unsubscribe function. */
export function on<K extends EventName>(name: K, listener: (event: EventOf<K>) => void): () => void {
  const ch = events[name];
  const fn = (message: unknown): void => listener(message as EventOf<K>);
  ch.subscribe(fn);
  return () => {
    ch.unsubscribe(fn);
  };
}
