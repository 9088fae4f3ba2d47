/**
 * The daemon's control socket: `<queue>/control.sock`, HTTP over a Unix
 * socket, so queue commands — and `curl --unix-socket` — reach the one process
 * that owns the queue instead of opening its LMDB environment themselves.
 *
 *   GET  /status                       {"pid", "queue_dir", "receiver", "builtin", "hostname", "messages"}
 *   GET  /queue[?id=ID…][&bodies=1]    JSON Lines: {"record": …, "body": base64?} or {"missing": ID},
 *                                      then {"end": true}
 *   POST /flush                        {} → {"changed": [], "missing": [], "busy": [], "unchanged": []}
 *   POST /delete|/hold|/release|/requeue  {"ids": [ID…] | "ALL"} → the same
 *   POST /runqueue                     {"ids"?: [ID…]} → one delivery pass: {"attempted", …, "missing"}
 *
 * The socket is mode 0600 (the daemon's user), or 0660 with a group. The
 * listing streams with back-pressure and stops when the reader goes away.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, readFileSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { setImmediate as yieldToIo } from 'node:timers/promises';
import { isId } from '../core/id.ts';
import { log } from '../core/log.ts';
import { deleteMessages, flush, hold, release, requeue, type OpResult } from '../core/queue-ops.ts';
import type { QueueStore } from '../core/store.ts';
import type { RecordedBuiltin } from '../receivers/recorded.ts';
import { drained } from './drain.ts';
import { storeItems } from './listing.ts';

export const CONTROL_SOCKET = 'control.sock';
/** Longest Unix socket path Linux accepts (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

export function controlSocketPath(queueDir: string): string {
  return join(queueDir, CONTROL_SOCKET);
}

/** The control socket's path, or an error when it is too long for a Unix socket (checked before start-up does any work). */
export function checkControlSocketPath(queueDir: string): string {
  const path = controlSocketPath(queueDir);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new Error(`the control socket ${path} would be ${Buffer.byteLength(path)} bytes long; Unix sockets allow ${MAX_SOCKET_PATH}: use a queue directory with a shorter path`);
  }
  return path;
}

/** What the control socket needs from the daemon. */
export interface ControlTarget {
  queueDir: string;
  store: QueueStore;
  receiverPath: string | undefined;
  /** The built-in receiver it runs (as the queue records it: no secrets), when there is no module. */
  builtin: RecordedBuiltin | undefined;
  /** Its hostname (a command that runs the receiver itself, showqueue's isDelivered, configures it the same). */
  hostname: string;
  /** One delivery pass (due messages, or these ids); undefined when the receiver has no deliver(). */
  runPass: ((ids: string[] | undefined) => Promise<unknown>) | undefined;
  /** Something was made due now: look for it. */
  wake(): void;
}

class BadRequest extends Error {}

const OPS = { delete: deleteMessages, hold, release, requeue } as const;
const PAGE_YIELD = 64;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > 16 * 1024 * 1024) throw new BadRequest('request body too large');
  }
  if (!text.trim()) return {};
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch { /* below */ }
  throw new BadRequest('the request body must be a JSON object');
}

function idsOf(v: unknown, allowAll: boolean): string[] | 'ALL' | undefined {
  if (v === undefined) return undefined;
  if (v === 'ALL' && allowAll) return 'ALL';
  if (!Array.isArray(v) || !v.every((id) => typeof id === 'string' && isId(id))) {
    throw new BadRequest(`"ids" must be a list of queue ids${allowAll ? ' or "ALL"' : ''}`);
  }
  return v as string[];
}

/** Streams the listing; resolves when done or when the reader has gone. */
async function list(t: ControlTarget, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const ids = url.searchParams.getAll('id');
  for (const id of ids) if (!isId(id)) throw new BadRequest(`${JSON.stringify(id)} is not a queue id`);
  const bodies = url.searchParams.get('bodies') === '1';
  let gone = false;
  req.socket.once('close', () => { gone = true; });
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  let n = 0;
  for await (const item of storeItems(t.store, { ids: ids.length ? ids : undefined, bodies })) {
    if (gone || res.destroyed) return;
    const line = 'missing' in item
      ? JSON.stringify(item)
      : JSON.stringify(item.body ? { record: item.record, body: item.body.toString('base64') } : { record: item.record });
    if (!res.write(`${line}\n`)) {
      await drained(res);
    } else if (++n % PAGE_YIELD === 0) {
      await yieldToIo(); // the SMTP sessions share this thread
    }
  }
  res.end('{"end":true}\n'); // a reader that does not see this line knows the listing was cut

}

async function route(t: ControlTarget, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = url.pathname.replace(/\/+$/, '') || '/';
  const op = path.slice(1);
  // what a command sees includes the delivery outcomes waiting for a commit to join (a delivered message is gone)
  await t.store.flushLater();
  if (req.method === 'GET' && path === '/status') {
    sendJson(res, 200, {
      pid: process.pid, queue_dir: t.queueDir, receiver: t.receiverPath ?? null, builtin: t.builtin ?? null, hostname: t.hostname,
      messages: t.store.count(),
    });
  } else if (req.method === 'GET' && path === '/queue') {
    await list(t, url, req, res);
  } else if (req.method === 'POST' && (op === 'flush' || Object.hasOwn(OPS, op))) {
    const body = await readJson(req);
    let result: OpResult;
    if (op === 'flush') {
      result = await flush(t.store);
    } else {
      const ids = idsOf(body.ids, true);
      if (!ids || ids.length === 0) throw new BadRequest(`${op}: give "ids": [ID…] or "ALL"`);
      result = await OPS[op as keyof typeof OPS](t.store, ids);
    }
    if (op !== 'delete' && op !== 'hold' && result.changed.length) t.wake();
    sendJson(res, 200, result);
  } else if (req.method === 'POST' && path === '/runqueue') {
    const ids = idsOf((await readJson(req)).ids, false) as string[] | undefined;
    if (!t.runPass) {
      sendJson(res, 409, { error: 'the receiver has no deliver(); nothing to do' });
      return;
    }
    sendJson(res, 200, await t.runPass(ids));
  } else if (['/status', '/queue', '/flush', '/runqueue'].includes(path) || Object.hasOwn(OPS, op)) {
    sendJson(res, 405, { error: `${req.method} is not allowed on ${path}` });
  } else {
    sendJson(res, 404, { error: `no such endpoint: ${path}` });
  }
}

/** A group name (from /etc/group, else getent) or a numeric gid. */
function groupId(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.split(':')[0] === name)
    ?? (() => {
      try {
        return execFileSync('getent', ['group', name], { encoding: 'utf8' }).trim();
      } catch {
        return undefined;
      }
    })();
  const gid = line?.split(':')[2];
  if (!gid || !/^\d+$/.test(gid)) throw new Error(`--control-group: no group named ${JSON.stringify(name)}`);
  return Number(gid);
}

export interface ControlServer {
  path: string;
  close(): Promise<void>;
}

/**
 * Listens on `<queue>/control.sock`. The caller owns the queue (holds its
 * lock), so a socket file found there is a dead daemon's: it is replaced.
 */
export async function startControl(t: ControlTarget, o: { group?: string } = {}): Promise<ControlServer> {
  const path = checkControlSocketPath(t.queueDir);
  const gid = o.group === undefined ? undefined : groupId(o.group);
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw new Error(`cannot remove the stale control socket ${path}: ${err.message}`);
  });
  const server: Server = createServer((req, res) => {
    route(t, req, res).catch((err: Error) => {
      if (err instanceof BadRequest) {
        if (!res.headersSent) sendJson(res, 400, { error: err.message });
        else res.destroy();
        return;
      }
      log.error('control socket: %s %s failed: %s', req.method, req.url, err.stack);
      if (!res.headersSent) sendJson(res, 500, { error: err.message });
      else res.destroy(); // the reader sees a cut listing, not a complete one
    });
  });
  server.requestTimeout = 0; // a listing of a big queue or a delivery pass may take long
  // the socket is created 0600, never briefly wider: bind() runs inside listen(), under this umask
  const oldMask = process.umask(0o177);
  let listening: Promise<void>;
  try {
    listening = new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  await listening.catch((err: Error) => {
    throw new Error(`cannot listen on the control socket ${path}: ${err.message}`, { cause: err });
  });
  if (gid !== undefined) {
    chownSync(path, -1, gid);
    chmodSync(path, 0o660);
  }
  return {
    path,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections(); // listings in flight end; their readers see a cut stream
    }).then(() => unlink(path).catch(() => {})),
  };
}
