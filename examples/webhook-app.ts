/**
 * Webhook to app: the HTTP side of the built-in WebhookReceiver. smtp-receive
 * receives the mail and POSTs each message here (raw RFC 5322 body, envelope in
 * X-Smtp-Receive-* headers, HMAC-SHA256 signature); this app checks the signature
 * on the raw bytes, saves the message as INBOX_DIR/<queue id>.eml and answers 204.
 * Any other answer (or none) makes smtp-receive keep the message and retry later.
 *
 *   export WEBHOOK_SECRET=$(openssl rand -hex 32)
 *   INBOX_DIR=./inbox PORT=8080 node --import tsx webhook-app.ts
 *   npx smtp-receive serve --webhook http://127.0.0.1:8080/inbound \
 *     --webhook-secret "$WEBHOOK_SECRET" --domain in.example.com
 *
 * (`--webhook-secret` is visible in `ps` to other local users; a receiver module
 * that extends WebhookReceiver can read it from a file: docs/receivers.md.)
 *
 * Delivery is at-least-once: after a crash or a lost answer the same message comes
 * again with the same X-Smtp-Receive-Id. Saving under that id makes a repeat
 * overwrite the first copy instead of adding a second.
 */
import { mkdir, open, rename } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { readWebhookEnvelope, verifyWebhookSignature, type WebhookEnvelope } from 'smtp-receive';

export interface InboundAppOptions {
  /** The secret given to `serve --webhook-secret`. */
  secret: string;
  /** Where messages are saved, one file per queue id. */
  inboxDir: string;
  /** Largest request body accepted (serve's default message limit is 20,000,000 bytes). */
  maxBytes?: number;
  /** Called for each message saved (after the file is on disk). */
  onMessage?: (envelope: WebhookEnvelope, file: string, size: number) => void;
}

/** The app: POST /inbound, signature checked, message saved, 204. */
export function createInboundApp(o: InboundAppOptions): Server {
  const maxBytes = o.maxBytes ?? 25_000_000;
  return createServer((req, res) => {
    const answer = (status: number, text = ''): void => void res.writeHead(status, { 'content-type': 'text/plain' }).end(text);
    if (new URL(req.url ?? '/', 'http://x').pathname !== '/inbound') return answer(404, 'not found\n');
    if (req.method !== 'POST') return answer(405, 'POST only\n');
    readBody(req, maxBytes).then(async (body) => {
      if (!body) return answer(413, 'too large\n');
      // on the raw bytes, before any parsing; false also when the timestamp is over 5 minutes off
      if (!verifyWebhookSignature(o.secret, req.headers, body)) return answer(401, 'bad signature\n');
      const envelope = readWebhookEnvelope(req.headers);
      if (!envelope || !/^[0-9A-Z]{17}$/.test(envelope.id)) return answer(400, 'no envelope\n');
      const file = await save(o.inboxDir, envelope.id, body);
      o.onMessage?.(envelope, file, body.length);
      answer(204); // any 2xx: delivered, smtp-receive removes it from its queue
    }).catch((err: Error) => {
      console.error(`webhook app: ${err.stack}`);
      answer(500, 'could not save the message\n'); // smtp-receive retries later
    });
  });
}

/** The request body, or undefined when it is larger than `max` bytes. */
async function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Writes `<dir>/<id>.eml` durably (temporary name, fsync, rename): a repeat overwrites it. */
async function save(dir: string, id: string, bytes: Buffer): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${id}.eml`);
  const fh = await open(`${file}.tmp`, 'w', 0o600);
  try {
    await fh.writeFile(bytes);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(`${file}.tmp`, file);
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
  return file;
}

// run as a program: WEBHOOK_SECRET, INBOX_DIR (./inbox), HOST (127.0.0.1), PORT (8080)
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const secret = process.env.WEBHOOK_SECRET;
  if (!secret) {
    console.error('webhook app: set WEBHOOK_SECRET (the secret given to serve --webhook-secret)');
    process.exit(2);
  }
  const app = createInboundApp({
    secret,
    inboxDir: process.env.INBOX_DIR ?? './inbox',
    onMessage: (e, file, size) => console.log(`verified ${e.id} from <${e.from}> to ${e.to.join(', ')}: ${size} bytes, saved as ${file}`),
  });
  app.listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? '127.0.0.1', () => {
    const { address, port } = app.address() as AddressInfo;
    console.log(`webhook app listening on http://${address.includes(':') ? `[${address}]` : address}:${port}/inbound`);
  });
}
