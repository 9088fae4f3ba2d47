/**
 * WebhookReceiver: POSTs each message to an HTTP(S) endpoint — the stored
 * message (RFC 5322, with our Received header) as the request body,
 * `content-type: message/rfc822`, the envelope in X-Smtp-Receive-* headers
 * and, with a secret, an HMAC-SHA256 signature (see webhook-signature.ts).
 * A 2xx answer delivers it; any other status (redirects are not followed),
 * a network error or the timeout throws, and the queue retries with backoff.
 */
import type { request as httpRequest } from 'node:http';
import type { Message } from '../core/message.ts';
import { Receiver } from '../core/receiver.ts';
import type { MessageBody } from '../core/types.ts';
import { millis, ReceiverOptionError } from './options.ts';
import { encodeAddress, WEBHOOK_HEADERS, webhookSignature } from './webhook-signature.ts';

export interface WebhookOptions {
  /** Where each message is POSTed: an http: or https: URL (no user:password in it; use `headers`). */
  url: string;
  /** Key of the HMAC-SHA256 signature (X-Smtp-Receive-Signature); without it requests are not signed. */
  secret?: string;
  /** Time limit of one request, ms: connecting, sending, and the answer. @default 30000 */
  timeout?: number;
  /** More request headers, e.g. `{ authorization: 'Bearer …' }`. */
  headers?: Record<string, string>;
}

const NAME = 'WebhookReceiver';
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function parseUrl(v: unknown): URL {
  let url: URL | undefined;
  try {
    url = typeof v === 'string' ? new URL(v) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new ReceiverOptionError(NAME, 'url', `expected an http(s) URL, got ${JSON.stringify(v)}`);
  }
  if (url.username || url.password) {
    throw new ReceiverOptionError(NAME, 'url', 'a user or password in the URL is not supported: send credentials with the headers option');
  }
  return url;
}

function checkHeaders(v: unknown): Record<string, string> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ReceiverOptionError(NAME, 'headers', 'expected an object of header names and values');
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(v)) {
    if (!TOKEN.test(name) || typeof value !== 'string' || /[\r\n\0]/.test(value)) {
      throw new ReceiverOptionError(NAME, 'headers', `${JSON.stringify(name)}: expected a header name and a one-line string value`);
    }
    out[name.toLowerCase()] = value;
  }
  return out;
}

export class WebhookReceiver extends Receiver {
  readonly url: URL;
  readonly timeout: number;
  private readonly secret: string | undefined;
  private readonly extraHeaders: Record<string, string>;
  /** The URL as errors show it: no query string (it may hold a token). */
  private readonly shown: string;

  constructor(options: WebhookOptions) {
    super();
    const o = (options ?? {}) as Partial<WebhookOptions>;
    if (o.url === undefined) throw new ReceiverOptionError(NAME, 'url', 'missing: the http(s) URL to POST each message to');
    this.url = parseUrl(o.url);
    if (o.secret !== undefined && (typeof o.secret !== 'string' || o.secret.length === 0)) {
      throw new ReceiverOptionError(NAME, 'secret', 'expected a non-empty string');
    }
    this.secret = o.secret;
    this.timeout = millis(NAME, 'timeout', o.timeout, 30_000);
    this.extraHeaders = checkHeaders(o.headers);
    this.shown = `${this.url.origin}${this.url.pathname}`;
  }

  override async deliver(message: Message, body: MessageBody): Promise<void> {
    const bytes = await body.buffer();
    const envelope = {
      id: message.id,
      from: encodeAddress(message.from),
      to: message.to.map(encodeAddress).join(','),
      timestamp: String(Math.floor(Date.now() / 1000)),
    };
    const headers: Record<string, string> = {
      ...this.extraHeaders,
      'content-type': 'message/rfc822',
      [WEBHOOK_HEADERS.id]: envelope.id,
      [WEBHOOK_HEADERS.from]: envelope.from,
      [WEBHOOK_HEADERS.to]: envelope.to,
      [WEBHOOK_HEADERS.timestamp]: envelope.timestamp,
    };
    if (this.secret) headers[WEBHOOK_HEADERS.signature] = webhookSignature(this.secret, envelope, bytes);
    const { status, statusText, said } = await this.post(headers, bytes);
    if (status >= 200 && status < 300) return;
    throw new Error(`webhook: POST ${this.shown} answered ${status}${statusText ? ` ${statusText}` : ''}${said ? `: ${said}` : ''}`);
  }

  /**
   * One request within the timeout (node:http, not fetch: fetch refuses its
   * "bad ports", 25 or 6666 among them). Settles with the status and, for an
   * error answer, the start of its body. Redirects are not followed.
   */
  private async post(headers: Record<string, string>, bytes: Buffer): Promise<Answer> {
    // loaded on first use: 'smtp-receive' (and so this module) loads in every worker thread
    const send: typeof httpRequest = (this.url.protocol === 'https:' ? await import('node:https') : await import('node:http')).request;
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err: Error | undefined, answer?: Answer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (!err) return resolve(answer!);
        req.destroy();
        reject(new Error(`webhook: POST ${this.shown}: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
      };
      const req = send(this.url, { method: 'POST', headers: { ...headers, 'content-length': String(bytes.length) } }, (res) => {
        const status = res.statusCode ?? 0;
        const answer = (): Answer => ({ status, statusText: res.statusMessage ?? '', said: oneLine(chunks) });
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          if (status >= 200 && status < 300) return; // read to the end and dropped: the connection can be reused
          chunks.push(c);
          n += c.length;
          if (n >= 200) {
            finish(undefined, answer());
            res.destroy();
          }
        });
        res.on('end', () => finish(undefined, answer()));
        res.on('error', (err) => (status ? finish(undefined, answer()) : finish(err)));
      });
      const timer = setTimeout(() => finish(new Error(`no answer within ${this.timeout} ms (timeout)`)), this.timeout);
      req.on('error', (err) => finish(err));
      req.end(bytes);
    });
  }
}

interface Answer {
  status: number;
  statusText: string;
  /** The start of an error answer's body, one line. */
  said: string;
}

function oneLine(chunks: Buffer[]): string {
  return Buffer.concat(chunks).toString('utf8').replace(/[\x00-\x1f\x7f]+/g, ' ').trim().slice(0, 200);
}
