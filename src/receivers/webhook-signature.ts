/**
 * The webhook's request headers and signature, shared by the sender
 * (WebhookReceiver) and the apps that receive it (verifyWebhookSignature,
 * readWebhookEnvelope). Only node:crypto: cheap to load in every thread.
 *
 * Envelope headers: X-Smtp-Receive-Id (queue id), X-Smtp-Receive-From (the
 * envelope sender, empty for `<>`), X-Smtp-Receive-To (the recipients,
 * comma-separated), X-Smtp-Receive-Timestamp (Unix seconds when sent). In From
 * and To, bytes outside printable ASCII, and `%` and `,`, are percent-encoded
 * (UTF-8): decode each item with decodeURIComponent (readWebhookEnvelope does).
 *
 * Signature (with a secret): X-Smtp-Receive-Signature: sha256=<hex>, the
 * HMAC-SHA256 under the secret of
 *   timestamp "\n" id "\n" from "\n" to "\n" body
 * with the four header values exactly as sent and the body's raw bytes — the
 * envelope is signed along with the message, and the timestamp lets an app
 * refuse replays (verifyWebhookSignature: older than 5 minutes by default).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const WEBHOOK_HEADERS = {
  id: 'x-smtp-receive-id',
  from: 'x-smtp-receive-from',
  to: 'x-smtp-receive-to',
  timestamp: 'x-smtp-receive-timestamp',
  signature: 'x-smtp-receive-signature',
} as const;

/** Headers as apps get them: a fetch `Headers`, or Node's `req.headers` (lower-case names). */
export type HeaderSource = { get(name: string): string | null } | Record<string, string | string[] | undefined>;

/** An address as it goes into X-Smtp-Receive-From / -To. */
export function encodeAddress(address: string): string {
  let out = '';
  for (const ch of address) {
    if (/^[\x21-\x24\x26-\x2b\x2d-\x7e]$/.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The signature header's value for a request. */
export function webhookSignature(secret: string, headers: { timestamp: string; id: string; from: string; to: string }, body: Uint8Array): string {
  const mac = createHmac('sha256', secret);
  mac.update(`${headers.timestamp}\n${headers.id}\n${headers.from}\n${headers.to}\n`);
  mac.update(body);
  return `sha256=${mac.digest('hex')}`;
}

function header(headers: HeaderSource, name: string): string | undefined {
  if (typeof headers.get === 'function') return (headers as { get(n: string): string | null }).get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  let v = record[name];
  if (v === undefined) {
    const key = Object.keys(record).find((k) => k.toLowerCase() === name);
    v = key === undefined ? undefined : record[key];
  }
  return Array.isArray(v) ? v.join(', ') : v;
}

export interface VerifyOptions {
  /** Oldest timestamp accepted, in seconds before `now`, and how far ahead a clock may be. @default 300 */
  toleranceSeconds?: number;
  /** The current time, ms since the epoch. @default Date.now() */
  now?: number;
}

/**
 * True when a webhook request carries a valid signature under `secret`: the
 * body is the raw request body (bytes, not parsed), the headers are the
 * request's, and the timestamp is within the tolerance. Constant-time compare.
 */
export function verifyWebhookSignature(secret: string, headers: HeaderSource, body: Uint8Array | string, o: VerifyOptions = {}): boolean {
  const timestamp = header(headers, WEBHOOK_HEADERS.timestamp);
  const given = header(headers, WEBHOOK_HEADERS.signature);
  const id = header(headers, WEBHOOK_HEADERS.id);
  const from = header(headers, WEBHOOK_HEADERS.from) ?? '';
  const to = header(headers, WEBHOOK_HEADERS.to);
  if (!timestamp || !given || id === undefined || to === undefined || !/^\d{1,12}$/.test(timestamp)) return false;
  const tolerance = o.toleranceSeconds ?? 300;
  const now = (o.now ?? Date.now()) / 1000;
  if (Math.abs(now - Number(timestamp)) > tolerance) return false;
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const expected = Buffer.from(webhookSignature(secret, { timestamp, id, from, to }, bytes));
  const actual = Buffer.from(given.trim());
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

export interface WebhookEnvelope {
  id: string;
  /** '' for the null sender `<>`. */
  from: string;
  to: string[];
  /** When the request was sent, Unix seconds. */
  timestamp: number;
}

/** The envelope of a webhook request, decoded (undefined when the headers are missing). Check the signature first. */
export function readWebhookEnvelope(headers: HeaderSource): WebhookEnvelope | undefined {
  const id = header(headers, WEBHOOK_HEADERS.id);
  const to = header(headers, WEBHOOK_HEADERS.to);
  const timestamp = header(headers, WEBHOOK_HEADERS.timestamp);
  if (!id || to === undefined || !timestamp) return undefined;
  const decode = (s: string): string => {
    try {
      return decodeURIComponent(s.trim());
    } catch {
      return s.trim(); // not encoded by us
    }
  };
  return {
    id,
    from: decode(header(headers, WEBHOOK_HEADERS.from) ?? ''),
    to: to === '' ? [] : to.split(',').map(decode),
    timestamp: Number(timestamp),
  };
}
