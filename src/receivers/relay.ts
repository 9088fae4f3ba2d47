/**
 * RelayReceiver: forwards each message to a smarthost over SMTP with the
 * original envelope (MAIL FROM and RCPT TO from the queue) and the stored
 * bytes as they are (nodemailer's SMTP client: dot-stuffing, and bare CR or LF
 * written as CRLF). Per recipient:
 *   - 2xx to RCPT and to the end of DATA: delivered;
 *   - 4xx, a network error, a timeout: retried later through the queue's backoff
 *     (only the recipients not yet delivered);
 *   - 5xx to RCPT: that recipient failed for good (`failRecipient`, then the
 *     `failed` hook); 5xx to MAIL FROM or to DATA: every recipient of the attempt.
 * A failed greeting, EHLO, STARTTLS or AUTH is retried: it is the smarthost's
 * set-up, not the message, that is wrong.
 *
 * nodemailer is loaded on first use (and checked in prestart), never by
 * importing 'smtp-receive'. Its SMTPConnection is used directly rather than
 * its transport: the transport parses envelope addresses (IDN domains to
 * punycode, duplicates merged), after which its accepted/rejected lists no
 * longer name the queue's recipients.
 */
import type { Readable } from 'node:stream';
import type SMTPConnectionClass from 'nodemailer/lib/smtp-connection';
import { failRecipient } from '../core/failures.ts';
import { log } from '../core/log.ts';
import type { Message } from '../core/message.ts';
import { Receiver } from '../core/receiver.ts';
import type { MessageBody, ReceiverConfig } from '../core/types.ts';
import { millis, ReceiverOptionError, text } from './options.ts';

export interface RelayOptions {
  /** The smarthost: a host name or an IP address. */
  host: string;
  /** Its SMTP port. @default 25 */
  port?: number;
  /** Time limit of connecting, of the greeting, and of each reply, ms. @default 60000 */
  timeout?: number;
  /** STARTTLS: use it when offered and fall back to plain text when it fails ('opportunistic'), insist ('require'), or never ('off'). @default 'opportunistic' */
  starttls?: 'opportunistic' | 'require' | 'off';
  /** TLS from the first byte (SMTPS, usually port 465). @default false */
  secure?: boolean;
  /** Log in (SMTP AUTH) with these. */
  auth?: { user: string; pass: string };
  /** The name to greet with (EHLO). @default this server's hostname */
  name?: string;
}

const NAME = 'RelayReceiver';
/** Bodies up to this size are sent from memory; larger ones are streamed from the queue. */
const BUFFER_MAX = 8 * 1024 * 1024;

type SmtpError = Error & {
  code?: string;
  command?: string;
  response?: string;
  responseCode?: number;
  recipient?: string;
  rejectedErrors?: SmtpError[];
};

type SendInfo = { accepted: string[]; rejected: string[]; rejectedErrors?: SmtpError[]; response: string };

let loaded: Promise<typeof SMTPConnectionClass> | undefined;
/** nodemailer's SMTP client, imported on first use. */
function smtpConnection(): Promise<typeof SMTPConnectionClass> {
  loaded ??= import('nodemailer/lib/smtp-connection').then(
    (m) => m.default,
    (err: Error) => {
      loaded = undefined;
      throw new Error(`the relay needs the nodemailer package, which could not be loaded: ${err.message}`, { cause: err });
    },
  );
  return loaded;
}

export class RelayReceiver extends Receiver {
  readonly host: string;
  readonly port: number;
  readonly timeout: number;
  private readonly options: RelayOptions;
  /** Recipients the smarthost accepted in this attempt (isDelivered after deliver). */
  private readonly accepted = new WeakMap<object, Set<string>>();

  constructor(options: RelayOptions) {
    super();
    const o = (options ?? {}) as Partial<RelayOptions>;
    if (o.host === undefined) throw new ReceiverOptionError(NAME, 'host', 'missing: the smarthost to forward mail to');
    this.host = text(NAME, 'host', o.host);
    if (/\s/.test(this.host)) throw new ReceiverOptionError(NAME, 'host', `expected a host name or address, got ${JSON.stringify(o.host)}`);
    if (o.port !== undefined && (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535)) {
      throw new ReceiverOptionError(NAME, 'port', `must be a whole number from 1 to 65535, got ${JSON.stringify(o.port)}`);
    }
    this.port = o.port ?? 25;
    this.timeout = millis(NAME, 'timeout', o.timeout, 60_000);
    if (o.starttls !== undefined && !['opportunistic', 'require', 'off'].includes(o.starttls)) {
      throw new ReceiverOptionError(NAME, 'starttls', `expected 'opportunistic', 'require' or 'off', got ${JSON.stringify(o.starttls)}`);
    }
    if (o.secure !== undefined && typeof o.secure !== 'boolean') throw new ReceiverOptionError(NAME, 'secure', 'expected true or false');
    if (o.auth !== undefined && (typeof o.auth?.user !== 'string' || typeof o.auth?.pass !== 'string')) {
      throw new ReceiverOptionError(NAME, 'auth', 'expected { user, pass } (strings)');
    }
    if (o.name !== undefined) text(NAME, 'name', o.name);
    this.options = { ...o, host: this.host };
  }

  /** Loads nodemailer now, so a missing dependency stops start-up rather than every delivery. */
  override async prestart(_config: ReceiverConfig): Promise<void> {
    await smtpConnection();
    log.info('relay: forwarding every message to %s', this.where);
  }

  private get where(): string {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  override async isDelivered(message: Message, recipient?: string): Promise<boolean> {
    const accepted = this.accepted.get(message);
    if (!accepted) return false;
    return recipient === undefined ? message.to.every((r) => accepted.has(r)) : accepted.has(recipient);
  }

  override async deliver(message: Message, body: MessageBody): Promise<void> {
    const rcpts = message.undelivered ?? message.to;
    if (rcpts.length === 0) return;
    let accepted = this.accepted.get(message);
    if (!accepted) this.accepted.set(message, (accepted = new Set()));
    const raw = body.size <= BUFFER_MAX ? await body.buffer() : body.stream();
    const envelope = { from: message.from, to: rcpts, use8BitMime: message.mimeType === '8BITMIME', size: message.size };
    let info: SendInfo;
    try {
      info = await this.send(envelope, raw);
    } catch (thrown) {
      const err = thrown as SmtpError;
      if (err.rejectedErrors?.length) { // every recipient was refused
        this.settle(message, err.rejectedErrors, []);
        return;
      }
      if ((err.responseCode ?? 0) >= 500 && (err.command === 'MAIL FROM' || err.command === 'DATA')) {
        for (const r of rcpts) failRecipient(message, r, err.response ?? `${err.responseCode} ${err.message}`);
        return;
      }
      throw new Error(`relay: ${this.where}: ${err.message}`);
    }
    for (const r of info.accepted) accepted.add(r);
    const answered = new Set([...info.accepted, ...info.rejected]);
    this.settle(message, info.rejectedErrors ?? [], rcpts.filter((r) => !answered.has(r)));
  }

  /** Refused recipients: 5xx failed for good, the rest retried (deliver throws when there are any). */
  private settle(message: Message, refused: SmtpError[], unanswered: string[]): void {
    const later: string[] = unanswered.map((r) => `${r}: no answer`);
    for (const e of refused) {
      if (!e.recipient) continue;
      if ((e.responseCode ?? 0) >= 500) failRecipient(message, e.recipient, e.response ?? `${e.responseCode} ${e.message}`);
      else later.push(`${e.recipient}: ${e.response ?? e.message}`);
    }
    if (later.length) throw new Error(`relay: ${this.where} deferred ${later.join('; ')}`);
  }

  /** One SMTP session: connect, STARTTLS and AUTH as configured, one transaction, QUIT. */
  private async send(envelope: { from: string; to: string[]; use8BitMime: boolean; size: number }, raw: Buffer | Readable): Promise<SendInfo> {
    const SMTPConnection = await smtpConnection();
    const o = this.options;
    const starttls = o.starttls ?? 'opportunistic';
    const conn = new SMTPConnection({
      host: this.host, port: this.port, secure: o.secure ?? false, name: o.name ?? this.config.hostname,
      connectionTimeout: this.timeout, greetingTimeout: this.timeout, socketTimeout: this.timeout,
      ignoreTLS: starttls === 'off', requireTLS: starttls === 'require', opportunisticTLS: starttls === 'opportunistic',
      logger: false, debug: false,
    });
    return new Promise<SendInfo>((resolve, reject) => {
      let settled = false;
      const finish = (err: SmtpError | null | undefined, info?: SendInfo): void => {
        if (settled) return;
        settled = true;
        if (err || !info) {
          conn.close();
          reject(err ?? new Error('the smarthost closed the connection'));
        } else {
          conn.quit();
          resolve(info);
        }
      };
      conn.once('error', (err: SmtpError) => finish(err));
      conn.once('end', () => finish(new Error('the smarthost closed the connection')));
      conn.connect((err) => {
        if (err) return finish(err as SmtpError);
        const transaction = (): void => conn.send(envelope, raw, (e, info) => finish(e as SmtpError | null, info as SendInfo | undefined));
        if (!o.auth) return transaction();
        conn.login({ user: o.auth.user, pass: o.auth.pass }, (e) => (e ? finish(e as SmtpError) : transaction()));
      });
    });
  }
}
