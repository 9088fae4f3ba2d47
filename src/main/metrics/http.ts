/**
 * The metrics listener, an HTTP server of its own (`serve --metrics HOST:PORT`):
 *   GET /metrics  Prometheus text format (the daemon's registry)
 *   GET /healthz  200 while the process is up
 *   GET /readyz   200 when it can take mail (listening, queue store open with 1 MiB
 *                 free, a worker ready); 503 with the reasons, one per line, otherwise
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsServer {
  host: string;
  port: number;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  host: string;
  port: number;
  registry: Registry;
  /** Why the daemon is not ready (empty: ready). */
  notReady(): string[];
}

function reply(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

async function handle(o: MetricsServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'only GET and HEAD\n');
  if (path === '/metrics') return reply(res, 200, await o.registry.metrics(), o.registry.contentType);
  if (path === '/healthz') return reply(res, 200, 'ok\n');
  if (path === '/readyz') {
    const reasons = o.notReady();
    return reasons.length === 0 ? reply(res, 200, 'ready\n') : reply(res, 503, `not ready: ${reasons.join('\n')}\n`);
  }
  reply(res, 404, 'not found: try /metrics, /healthz or /readyz\n');
}

/** Listens; a busy or bad address rejects with the listen error. */
export async function startMetricsServer(o: MetricsServerOptions): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    handle(o, req, res).catch((err: Error) => {
      if (!res.headersSent) reply(res, 500, `${err.message}\n`);
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(o.port, o.host, () => {
      server.off('error', fail);
      ok();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    host: address.address,
    port: address.port,
    close: () => new Promise<void>((done) => {
      server.close(() => done());
      server.closeAllConnections();
    }),
  };
}
