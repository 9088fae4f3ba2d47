/** Types shared by the main thread, the workers and user receivers. */
import type { Readable } from 'node:stream';
import type { MessageAuth } from './auth.ts';
import type { ReplyData, SmtpReply } from './reply.ts';

/** The connecting client, as `checkAccess` sees it. */
export interface ClientInfo {
  /** Connection id (smtp-server's), for logs. */
  id: string;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  /** Reverse DNS name of remoteAddress, or '' when unknown, off or timed out. */
  peerHost: string;
  /** RFC 1413 user name, or '' when ident is off or had no answer. */
  ident: string;
}

/** The SMTP session so far, as `checkMailFrom` / `checkRcptTo` see it. */
export interface SessionInfo {
  client: ClientInfo;
  /** EHLO/HELO argument. */
  helo: string;
  /** Envelope sender of the current transaction ('' for `<>`), once MAIL FROM was accepted. */
  from?: string;
  /** Recipients accepted so far in this transaction (after redirects). */
  to: readonly string[];
  /** The user name `checkAuth` accepted (SMTP AUTH), when the client authenticated. */
  user?: string;
  /** The TLS session (STARTTLS or the implicit-TLS listener), when there is one. */
  tls?: TlsInfo;
}

/** A TLS session's protocol and cipher, as the `Received:` header records them. */
export interface TlsInfo {
  /** Negotiated protocol: 'TLSv1.2' or 'TLSv1.3'. */
  protocol: string;
  /** Cipher suite (OpenSSL name), e.g. 'TLS_AES_256_GCM_SHA384'. */
  cipher: string;
}

/** What an SMTP AUTH client sent (PLAIN or LOGIN), as `checkAuth` sees it. */
export interface AuthCredentials {
  method: 'PLAIN' | 'LOGIN';
  /** The authentication identity (PLAIN's authcid, or its authzid when authcid is empty). */
  username: string;
  password: string;
  /** PLAIN's authorization identity ('' when none). It is not acted on: `session.user` is the username. */
  authzid: string;
}

/**
 * What `checkAuth` returns: `true` accepts the client as `credentials.username`,
 * a string accepts it under that user name, anything else refuses it (535 5.7.8).
 */
export type AuthVerdict = boolean | string | void | undefined;

/** The seed's message fields (PEERADDR → peerAddr, …). */
export interface MessageFields {
  /** Queue id: unique, time-ordered, safe as a file name. */
  id: string;
  peerAddr: string;
  peerHost: string;
  ident: string;
  helo: string;
  mimeType: '8BITMIME' | '7BIT';
  /** Envelope sender; '' for the null sender `<>`. */
  from: string;
  /** Envelope recipients. `deliver` may change this list; the change persists. */
  to: string[];
  /** When the message was queued, ms since the epoch. */
  time: number;
  /** Path of the message text: the spool file, or where an inline body is written out on first use. */
  textFile: string;
  /** Stored size in bytes (trace headers included). */
  size: number;
  /** The error of the last delivery attempt. */
  error?: string;
  /** When delivery was last attempted, ms since the epoch. */
  lastRun?: number;
  /** Recipients that failed for good (set through `failRecipient` in deliver); they count as done. */
  failed?: FailedRecipient[];
  /** SPF, DKIM, DMARC and ARC verdicts, computed before predeliver (absent with authentication off). */
  auth?: MessageAuth;
}

/** A recipient that failed for good: the next hop's 5xx reply, and when. */
export interface FailedRecipient {
  recipient: string;
  reply: ReplyData;
  /** ms since the epoch. */
  time: number;
}

/** Fields that `deliver` adds are kept too; they must be plain data (structured-clone / msgpack). */
export type MessageSnapshot = MessageFields & { [field: string]: unknown };

/** One body API whatever the storage (inline in LMDB or a spool file). */
export interface MessageBody {
  /** Stored size in bytes. */
  readonly size: number;
  /** The stored bytes as a stream. */
  stream(): Readable;
  /** The stored bytes in one buffer (reads a spooled file whole: mind large messages). */
  buffer(): Promise<Buffer>;
  /** A file holding the stored bytes; an inline body is written out on first use. */
  path(): Promise<string>;
}

/** What `checkMailFrom` may return: nothing (accept) or a refusal. */
export type MailFromVerdict = void | undefined | SmtpReply | string;

/** What `checkRcptTo` may return: nothing (accept), a redirect, or a refusal. */
export type RcptVerdict = void | undefined | { redirect: string[] } | SmtpReply | string;

/** Configuration handed to `prestart` and kept on the receiver as `this.config`. */
export interface ReceiverConfig {
  /** Local domains the default `checkRcptTo` accepts. */
  domains: string[];
  /** The queue directory in use. */
  queueDir: string;
  /** The name this server greets with and writes into Received headers. */
  hostname: string;
}
