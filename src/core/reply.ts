/**
 * SMTP replies as values: one type with code, enhanced status code and text,
 * named replies for the common cases, and exactly one function (`toReply`) that
 * turns anything a hook threw into a reply.
 */

const BRAND = Symbol.for('smtp-receive.SmtpReply');

/** Plain-data form of a reply: what crosses a thread boundary. */
export interface ReplyData {
  code: number;
  enhanced: string;
  text: string;
}

/** An SMTP reply. Throw one from a hook to answer the client with it. */
export class SmtpReply extends Error implements ReplyData {
  readonly [BRAND] = true;
  constructor(
    readonly code: number,
    readonly enhanced: string,
    readonly text: string,
  ) {
    super(`${code} ${enhanced} ${text}`);
    this.name = 'SmtpReply';
    if (!Number.isInteger(code) || code < 200 || code > 599) throw new RangeError(`SMTP reply code out of range: ${code}`);
    if (!ENHANCED.test(enhanced) || enhanced[0] !== String(code)[0]) {
      throw new RangeError(`enhanced status code ${JSON.stringify(enhanced)} does not fit reply code ${code}`);
    }
    if (/[\x00-\x1f\x7f]/.test(text)) throw new RangeError('SMTP reply text must not contain control characters');
  }

  /** Brand check that works across copies of this module (no fragile instanceof). */
  static is(value: unknown): value is SmtpReply {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }

  /** 4xx: the client should try again later. */
  get temporary(): boolean {
    return this.code >= 400 && this.code < 500;
  }

  /** The reply text as smtp-server sends it: the enhanced code leads the text. */
  get line(): string {
    return `${this.enhanced} ${this.text}`;
  }

  toData(): ReplyData {
    return { code: this.code, enhanced: this.enhanced, text: this.text };
  }

  static fromData(data: ReplyData): SmtpReply {
    return new SmtpReply(data.code, data.enhanced, data.text);
  }
}

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3}$/;
const REPLY_STRING = /^([245]\d\d)(?:[ -]([245]\.\d{1,3}\.\d{1,3}))?(?:[ -](.*))?$/s;

/** Default enhanced codes for the seed's string form ("550 relaying denied"). */
const DEFAULT_ENHANCED: Record<number, string> = {
  421: '4.3.2', 450: '4.2.0', 451: '4.3.0', 452: '4.3.1',
  550: '5.7.1', 551: '5.1.6', 552: '5.3.4', 553: '5.1.3', 554: '5.7.1',
};

/** Parses the seed's string form: `"550 relaying denied"` or `"550 5.7.1 relaying denied"`. */
export function parseReply(text: string): SmtpReply {
  const m = REPLY_STRING.exec(text.trim());
  if (!m) throw new TypeError(`not an SMTP reply: ${JSON.stringify(text.slice(0, 80))}`);
  const code = Number(m[1]);
  const enhanced = m[2] ?? DEFAULT_ENHANCED[code] ?? `${m[1]![0]}.0.0`;
  const body = (m[3] ?? '').replace(/[\x00-\x1f\x7f]+/g, ' ').trim() || 'Requested action not taken';
  return new SmtpReply(code, enhanced, body);
}

/** Named replies for the cases the framework answers itself. */
export const Replies = {
  relayingDenied: new SmtpReply(550, '5.7.1', 'Relaying denied'),
  accessDenied: new SmtpReply(554, '5.7.1', 'Access denied'),
  tooManyRecipients: new SmtpReply(452, '4.5.3', 'Too many recipients'),
  messageTooBig: new SmtpReply(552, '5.3.4', 'Message too big for system'),
  localError: new SmtpReply(451, '4.3.0', 'Local error in processing, try again later'),
  connectError: new SmtpReply(421, '4.3.0', 'Local error in processing, try again later'),
  insufficientStorage: new SmtpReply(452, '4.3.1', 'Insufficient system storage, try again later'),
  busy: new SmtpReply(451, '4.3.2', 'System busy, try again later'),
  badAddress: new SmtpReply(501, '5.1.3', 'Bad address syntax'),
  shuttingDown: new SmtpReply(421, '4.3.2', 'Service shutting down, try again later'),
} as const;

/**
 * The text of the 250 after DATA (smtp-server prefixes the code). A string, not
 * an SmtpReply: this runs once per message and an Error subclass would capture
 * a stack trace each time.
 */
export function queuedLine(id: string): string {
  return `2.0.0 Ok: queued as ${id}`;
}

export interface Verdict {
  reply: SmtpReply;
  /** true when the thrown thing was not a reply: an internal error for the log, never for the client. */
  internal: boolean;
}

/**
 * The one function that turns anything a hook threw (or returned as a refusal)
 * into a reply. Replies and reply strings pass through; anything else becomes
 * `fallback` (451 4.3.0 by default) and is marked internal.
 */
export function toReply(thrown: unknown, fallback: SmtpReply = Replies.localError): Verdict {
  if (SmtpReply.is(thrown)) return { reply: thrown, internal: false };
  if (typeof thrown === 'string') {
    try {
      return { reply: parseReply(thrown), internal: false };
    } catch {
      return { reply: fallback, internal: true };
    }
  }
  if (isReplyData(thrown)) {
    try {
      return { reply: SmtpReply.fromData(thrown), internal: false };
    } catch {
      return { reply: fallback, internal: true };
    }
  }
  return { reply: fallback, internal: true };
}

function isReplyData(x: unknown): x is ReplyData {
  if (typeof x !== 'object' || x === null || x instanceof Error) return false;
  const r = x as Partial<ReplyData>;
  return typeof r.code === 'number' && typeof r.enhanced === 'string' && typeof r.text === 'string';
}

/**
 * The refusal in the shape smtp-server's callbacks read (responseCode + message).
 * A plain object: no stack trace is captured for an ordinary refusal.
 */
export function toServerError(reply: SmtpReply): Error & { responseCode: number } {
  return { name: 'SmtpReply', message: reply.line, responseCode: reply.code } as Error & { responseCode: number };
}
