/**
 * A queue command's side of the daemon's control socket (control-server.ts):
 * HTTP over `<queue>/control.sock`.
 */
import { request, type IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import type { QueueRecord } from '../core/store.ts';
import type { RecordedBuiltin } from '../receivers/recorded.ts';
import { controlSocketPath } from './control-server.ts';
import type { ListItem } from './listing.ts';

export interface DaemonStatus {
  pid: number;
  queue_dir: string;
  receiver: string | null;
  /** The built-in receiver it runs, without secrets (null with a module; absent from an older daemon). */
  builtin?: RecordedBuiltin | null;
  /** Its hostname (absent from an older daemon). */
  hostname?: string;
  messages: number;
}

/** The daemon answered with an error. */
export class ControlError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'ControlError';
  }
}

/** The daemon closed the connection before answering: it stopped or crashed meanwhile. */
export class DaemonGone extends ControlError {
  constructor(what: string) {
    super(0, `the daemon went away during ${what} (it stopped or crashed); the request may or may not have taken effect`);
    this.name = 'DaemonGone';
  }
}

const GONE = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ENOENT']);

export class ControlClient {
  constructor(readonly socketPath: string) {}

  private send(method: string, path: string, body?: unknown, timeoutMs = 0): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      const req = request({
        socketPath: this.socketPath, path, method, agent: false,
        headers: text === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
      }, resolve);
      req.once('error', reject);
      if (timeoutMs) {
        req.setTimeout(timeoutMs, () => req.destroy(new ControlError(0,
          `nothing answered on ${this.socketPath} within ${timeoutMs} ms: the daemon that owns the queue is stuck?`)));
      }
      req.end(text);
    });
  }

  private async json<T>(method: string, path: string, body?: unknown, timeoutMs = 0): Promise<T> {
    let res: IncomingMessage;
    let text = '';
    try {
      res = await this.send(method, path, body, timeoutMs);
      for await (const chunk of res) text += chunk;
    } catch (err) {
      // findDaemon tells "nobody listens" itself; here the daemon was there when we asked
      if (path !== '/status' && GONE.has((err as NodeJS.ErrnoException).code ?? '')) throw new DaemonGone(`${method} ${path}`);
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new ControlError(res.statusCode ?? 0, `the daemon's control socket answered ${res.statusCode} with no JSON`);
    }
    if (res.statusCode !== 200) {
      throw new ControlError(res.statusCode ?? 0, (parsed as { error?: string }).error ?? `status ${res.statusCode}`);
    }
    return parsed as T;
  }

  /** Who owns the queue; a daemon that does not answer within `timeoutMs` is an error, not a wait forever. */
  status(timeoutMs = 30_000): Promise<DaemonStatus> {
    return this.json('GET', '/status', undefined, timeoutMs);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.json('POST', path, body);
  }

  /** The listing, streamed; stopping early (break, or an error downstream) ends the request. */
  async* items(o: { ids?: string[]; bodies?: boolean } = {}): AsyncGenerator<ListItem> {
    const q = new URLSearchParams();
    for (const id of o.ids ?? []) q.append('id', id);
    if (o.bodies) q.set('bodies', '1');
    let res: IncomingMessage;
    try {
      res = await this.send('GET', `/queue${q.size ? `?${q}` : ''}`);
    } catch (err) {
      if (GONE.has((err as NodeJS.ErrnoException).code ?? '')) throw new DaemonGone('the listing');
      throw err;
    }
    try {
      if (res.statusCode !== 200) {
        let text = '';
        for await (const chunk of res) text += chunk;
        throw new ControlError(res.statusCode ?? 0, (JSON.parse(text) as { error?: string }).error ?? text);
      }
      let ended = false;
      for await (const line of createInterface({ input: res, crlfDelay: Infinity })) {
        if (!line) continue;
        const v = JSON.parse(line) as { record?: QueueRecord; body?: string; missing?: string; end?: boolean };
        if (v.end) {
          ended = true;
          break;
        }
        if (v.missing !== undefined) yield { missing: v.missing };
        else yield v.body === undefined ? { record: v.record! } : { record: v.record!, body: Buffer.from(v.body, 'base64') };
      }
      if (!ended) throw new DaemonGone('the listing; what was printed is incomplete');
    } catch (err) {
      if (GONE.has((err as NodeJS.ErrnoException).code ?? '') || (err as Error).message === 'aborted') {
        throw new DaemonGone('the listing; what was printed is incomplete');
      }
      throw err;
    } finally {
      res.destroy();
    }
  }
}

/** The daemon that owns a queue, when one answers on its control socket. */
export async function findDaemon(queueDir: string): Promise<{ client: ControlClient; status: DaemonStatus } | undefined> {
  const client = new ControlClient(controlSocketPath(queueDir));
  try {
    return { client, status: await client.status() };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // no socket, or a dead daemon's socket file: nobody listens
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE') return undefined;
    throw err;
  }
}
