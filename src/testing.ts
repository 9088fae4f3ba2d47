/**
 * A harness for users' own tests: a receiver on 127.0.0.1, a free port and a
 * temporary queue, and a stop() that removes the queue again. Without a
 * receiver module or a `builtin`, it runs the base Receiver (`{ kind: 'none' }`),
 * not serve's Maildir default: a test sink that keeps every accepted message
 * queued for the test to read, and writes nothing outside its temporary queue.
 * The metrics listener is off unless `metrics` asks for one (e.g. '127.0.0.1:0').
 * Its log is quiet (warnings and errors) unless `logLevel` or SMTP_RECEIVE_LOG
 * asks for more.
 * Authentication is off unless asked for (`auth: true`, with `dnsServers`):
 * a test should not depend on the machine's DNS.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer } from './main/server.ts';
import type { ServeOptions } from './main/options.ts';

export interface TestServer extends RunningServer {
  /** Stops the server and deletes its temporary queue (unless `keepQueue`). */
  stop(): Promise<void>;
}

export async function startTestServer(options: ServeOptions & { keepQueue?: boolean } = {}): Promise<TestServer> {
  const { keepQueue, ...rest } = options;
  const queueDir = rest.queueDir ?? await mkdtemp(join(tmpdir(), 'smtp-receive-test-'));
  const builtin = rest.builtin ?? (rest.receiverPath ? undefined : { kind: 'none' as const });
  let server: RunningServer;
  try {
    server = await startServer({
      host: '127.0.0.1', port: 0, reverseDns: false, hostname: 'test.invalid', workers: 1, metrics: false, auth: false,
      logLevel: process.env.SMTP_RECEIVE_LOG ? undefined : 'warn', ...rest, builtin, queueDir,
    });
  } catch (err) {
    // a start-up that fails (a bad receiver module, a busy port) leaves no temporary queue behind
    if (!keepQueue && !rest.queueDir) await rm(queueDir, { recursive: true, force: true });
    throw err;
  }
  return {
    ...server,
    async stop() {
      await server.close();
      if (!keepQueue && !rest.queueDir) await rm(queueDir, { recursive: true, force: true });
    },
  };
}
