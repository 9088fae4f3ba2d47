/**
 * The Receiver: subclass it and override only the hooks you care about.
 * Every hook has a safe default. A receiver module default-exports a subclass;
 * the daemon loads it on the main thread and in every worker.
 */
import type { Message } from './message.ts';
import { Replies, type SmtpReply } from './reply.ts';
import type {
  AuthCredentials, AuthVerdict, ClientInfo, MailFromVerdict, MessageBody, RcptVerdict, ReceiverConfig, SessionInfo,
} from './types.ts';

const BRAND = Symbol.for('smtp-receive.Receiver');
const BASE = Symbol.for('smtp-receive.Receiver.base');

export class Receiver {
  static readonly [BRAND] = true;
  static readonly [BASE] = true;

  /** Set by the framework before `prestart`. */
  config: ReceiverConfig = { domains: ['localhost'], queueDir: './queue', hostname: 'localhost' };

  /** Main thread, per connection. Throw a reply to refuse (554, or 421 for "try later"). */
  async checkAccess(_client: ClientInfo): Promise<void> {}

  /**
   * Main thread, SMTP AUTH (PLAIN, LOGIN). Return `true` (or a user name) to accept; anything else
   * gets 535 5.7.8. Not overridden: AUTH is not offered. Offered only over TLS (see --allow-insecure-auth).
   */
  async checkAuth(_credentials: AuthCredentials, _session: SessionInfo): Promise<AuthVerdict> {
    return false;
  }

  /** Main thread, MAIL FROM. Return/throw a reply to refuse; `address` is '' for `<>`. */
  async checkMailFrom(_address: string, _session: SessionInfo): Promise<MailFromVerdict> {}

  /** Main thread, RCPT TO. Accept only the local domains: no open relay by default. */
  async checkRcptTo(address: string, _session: SessionInfo): Promise<RcptVerdict> {
    const at = address.lastIndexOf('@');
    if (at < 0) return address.toLowerCase() === 'postmaster' ? undefined : Replies.relayingDenied;
    const domain = address.slice(at + 1).toLowerCase();
    return this.config.domains.includes(domain) ? undefined : Replies.relayingDenied;
  }

  /** Worker, after DATA and before the 250. Throw a reply to reject the message. */
  async predeliver(_message: Message, _body: MessageBody): Promise<void> {}

  /**
   * Worker, from the queue. Throw to retry later (the error is kept as `message.error`).
   * Fields you set on `message` (and changes to `message.to`) persist to the next attempt.
   * `message.undelivered` lists the recipients not yet known to be delivered.
   * `failRecipient(message, rcpt, reply)` fails one recipient for good (a 5xx): it counts as done.
   */
  async deliver(_message: Message, _body: MessageBody): Promise<void> {
    throw new Error('deliver() is not implemented by this receiver; the message stays queued');
  }

  /**
   * Worker or CLI. With a recipient: delivered to that one? Without: fully delivered?
   * Not overridden: a deliver() that returns without throwing delivered the message.
   */
  async isDelivered(_message: Message, _recipient?: string): Promise<boolean> {
    return false;
  }

  /** Worker, once per recipient that deliver failed for good (`failRecipient`). No bounce is sent. */
  async failed(message: Message, recipient: string, reply: SmtpReply): Promise<void> {
    message.log('delivery to %s failed for good: %s', recipient, reply.message);
  }

  /** Worker, once, when a message outlives the queue lifetime and goes on hold. */
  async expired(message: Message): Promise<void> {
    message.log('expired after %d attempts, now on hold: %s', message.attempts, message.error ?? 'no error recorded');
  }

  /** Main thread, once, before listening. */
  async prestart(_config: ReceiverConfig): Promise<void> {}

  /** Where the queue lives (the `--queue` flag overrides it). */
  queueDirectory(): string {
    return './queue';
  }

  /** Largest message accepted, in bytes (552 5.3.4 beyond it). */
  maxDataLength(): number {
    return 20_000_000;
  }

  /** Most recipients per message (452 4.5.3 beyond it). */
  maxRecipients(): number {
    return 10_000;
  }

  /** Prepend `X-Envelope-To:` headers (then `Bcc:` is not blind). */
  addEnvelope(): boolean {
    return false;
  }

  /** Log to syslog instead of stderr. */
  doSyslog(): boolean {
    return false;
  }

  /** Is `cls` the base class itself (of any copy of this module), not a subclass? */
  static isBaseClass(cls: unknown): boolean {
    return typeof cls === 'function' && Object.hasOwn(cls, BASE);
  }

  /** Brand check across module copies: is `cls` a Receiver subclass? */
  static isReceiverClass(cls: unknown): cls is typeof Receiver {
    return typeof cls === 'function' && (cls as unknown as Record<symbol, unknown>)[BRAND] === true;
  }
}
