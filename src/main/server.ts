/** The receiving daemon: wires receiver, queue store, worker pool and smtp-server together. */
import { resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTP_SERVER_PATCH } from '../patch/smtp-server.ts';
import { lmdbPatched } from '../patch/lmdb.ts';
import { createReceiver, overrides } from '../core/load.ts';
import { log } from '../core/log.ts';
import type { Receiver } from '../core/receiver.ts';
import { DirSyncer, ensureSpool, removeOrphans, spoolDir } from '../core/spool.ts';
import { QueueLock, describeOwner } from '../core/lock.ts';
import { QueueStore } from '../core/store.ts';
import { onData } from './accept.ts';
import { startServerLogging } from './log/serve-logging.ts';
import { checkControlSocketPath, startControl, type ControlServer } from './control-server.ts';
import type { Context } from './context.ts';
import { limitOptions } from './limits.ts';
import { reverseResolver } from './lookup.ts';
import { proxyMatcher } from './proxy-from.ts';
import { OptionError, resolveOptions, type ResolvedOptions, type ServeOptions } from './options.ts';
import { ReceiverOptionError } from '../receivers/options.ts';
import { recordBuiltin } from '../receivers/recorded.ts';
import { WorkerPool } from './pool.ts';
import { authSettings } from './auth-options.ts';
import { QueueRunner } from './runner.ts';
import { deliveryPass } from './runqueue.ts';
import { onClose, onConnect, onMailFrom, onRcptTo } from './session.ts';
import { loadTls } from './tls.ts';
import { describeTls, logSmtpError, reloadTls, requireTls, tlsSmtpOptions } from './tls-server.ts';
import { startMonitoring, type Monitoring } from './metrics/index.ts';

export interface RunningServer {
  host: string;
  port: number;
  queueDir: string;
  store: QueueStore;
  receiver: Receiver;
  options: ResolvedOptions;
  /** The queue runner, when this process delivers. */
  runner: QueueRunner | undefined;
  /** The implicit-TLS listener's address (tlsPort), when there is one. */
  tls: { host: string; port: number } | undefined;
  /** Re-reads the TLS key and certificate for new sessions (SIGHUP); throws, changing nothing, when they do not fit. */
  reloadTls(): Promise<void>;
  /** The address of the /metrics, /healthz and /readyz listener (undefined: metrics off). */
  metricsHost: string | undefined;
  metricsPort: number | undefined;
  /** Stops accepting, ends sessions, closes the pool and the queue. */
  close(): Promise<void>;
}

function assertPatched(): void {
  // src/patch/ patches smtp-server and lmdb-js when imported (above), or throws; this catches any other way
  // of ending up with an unpatched copy (another smtp-server than the one patched, a removed marker)
  if ((SMTPServer as unknown as { smtpReceivePatch?: number }).smtpReceivePatch !== SMTP_SERVER_PATCH) {
    throw new Error('smtp-server is not patched: the SMTPServer this process loaded lacks the marker of smtp-receive\'s ' +
      'run-time patch (src/patch/smtp-server.ts); reinstall smtp-receive\'s dependencies');
  }
  if (!lmdbPatched()) {
    throw new Error('lmdb is not patched: the lmdb-js that opens this process\'s databases lacks smtp-receive\'s run-time ' +
      'patch (src/patch/lmdb.ts): reinstall smtp-receive\'s dependencies; if the application also loads lmdb with ' +
      'require(), let smtp-receive open its queue before the application opens a database that way');
  }
}

/** An address as HOST:PORT, IPv6 in brackets. */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export async function startServer(options: ServeOptions = {}): Promise<RunningServer> {
  assertPatched();
  const opts = resolveOptions(options);
  // key and certificate first: a bad file is reported before anything is opened
  const tlsMaterial = opts.tls ? await loadTls(opts.tls) : undefined;
  if (tlsMaterial) describeTls(tlsMaterial, 'start-up');
  const receiverPath = opts.receiverPath ? resolve(opts.receiverPath) : undefined;
  const { builtin } = opts;
  // a built-in receiver's option errors name the serve option (and so the CLI flag)
  const named = (err: unknown): unknown => (builtin && ReceiverOptionError.is(err) ? new OptionError(`${builtin.kind}.${err.option}`, err.detail) : err);
  const receiver = await createReceiver(receiverPath, { domains: opts.domains, queueDir: '', hostname: opts.hostname }, builtin)
    .catch((err: unknown) => { throw named(err); });
  const queueDir = resolve(opts.queueDir ?? receiver.queueDirectory());
  receiver.config = { ...receiver.config, queueDir };
  checkControlSocketPath(queueDir);
  const logging = await startServerLogging(opts, receiver);

  await ensureSpool(queueDir);
  // one owner per queue: a daemon already on it refuses us at once; a queue command is waited for
  const lock = await QueueLock.acquire(queueDir, 'serve', {
    waitMs: opts.lockWait, refuseAt: ['serve'],
    onWait: (owner) => log.info('queue %s is in use by %s; waiting up to %d ms (--lock-wait)', queueDir, describeOwner(owner), opts.lockWait),
  }).catch(async (err: unknown) => { await logging.close(); throw err; });
  const undo: Array<() => Promise<void> | void> = [() => logging.close(), () => lock.release()];
  const unwind = async (): Promise<void> => {
    for (const f of undo.reverse()) await f();
  };
  let store: QueueStore;
  let pool: WorkerPool;
  let runner: QueueRunner | undefined;
  let control: ControlServer;
  const passes = new Set<QueueRunner>();
  try {
    store = await QueueStore.open(queueDir);
    const opened = store;
    undo.push(() => opened.close());
    const recovered = await store.recoverLeases();
    if (recovered.length) log.info('start-up: %d message(s) leased by a previous owner are due again now', recovered.length);
    const removed = await removeOrphans(queueDir, (id) => opened.has(id));
    if (removed) log.info('start-up: removed %d spool file(s) left without a record', removed);
    await receiver.prestart(receiver.config).catch((err: unknown) => { throw named(err); });

    pool = new WorkerPool(
      {
        receiverPath, builtin, queueDir, domains: opts.domains, hostname: opts.hostname, lockFd: lock.fd,
        logLevel: opts.logLevel, auth: authSettings(opts),
      },
      { size: opts.workers, maxQueue: opts.workerQueue },
    );
    const started = pool;
    undo.push(() => started.close());
    await pool.ready();
    // what a runqueue with no daemon delivers with: this module, or this built-in (its settings, not its secrets)
    const recorded = builtin && recordBuiltin(builtin);
    await store.recordReceiver(receiverPath, { builtin: recorded, hostname: opts.hostname });
    const runnerOptions = {
      retry: { minDelay: opts.retryMin, maxDelay: opts.retryMax, maxLifetime: opts.maxLifetime },
      deliverTimeout: opts.deliverTimeout,
      concurrency: opts.maxDeliveries,
    };
    const canDeliver = overrides(receiver, 'deliver');
    if (opts.runner && canDeliver) {
      runner = new QueueRunner(store, pool, { ...runnerOptions, pollInterval: opts.pollInterval });
    } else if (opts.runner) {
      log.info('the receiver has no deliver(): messages stay queued (see runqueue)');
    }
    const live = runner;
    control = await startControl({
      queueDir, store, receiverPath, builtin: recorded, hostname: opts.hostname,
      runPass: canDeliver ? (ids) => deliveryPass(opened, started, runnerOptions, ids, passes) : undefined,
      wake: () => live?.wake(),
    }, { group: opts.controlGroup });
    const listening = control;
    undo.push(() => listening.close());
  } catch (err) {
    await unwind();
    throw err;
  }
  const ctx: Context = {
    receiver, opts, queueDir, store, pool, runner,
    spoolSync: new DirSyncer(spoolDir(queueDir)),
    maxRecipients: opts.maxRecipients || receiver.maxRecipients(),
    maxDataLength: opts.maxSize || receiver.maxDataLength(),
    addEnvelope: receiver.addEnvelope(),
    hooks: {
      checkAccess: overrides(receiver, 'checkAccess'),
      checkMailFrom: overrides(receiver, 'checkMailFrom'),
      checkRcptTo: overrides(receiver, 'checkRcptTo'),
      predeliver: overrides(receiver, 'predeliver'),
    },
  };

  const smtpOptions: SMTPServerOptions & { earlyTalkerDelay: number; proxyFrom?: (address?: string) => boolean; proxyTimeout: number }
    & ReturnType<typeof limitOptions> = {
    name: opts.hostname,
    banner: 'smtp-receive',
    logger: false,
    ...tlsSmtpOptions(ctx, tlsMaterial, overrides(receiver, 'checkAuth')),
    hideENHANCEDSTATUSCODES: false,
    size: ctx.maxDataLength,
    maxClients: opts.maxClients,
    socketTimeout: opts.socketTimeout,
    closeTimeout: 5000,
    earlyTalkerDelay: opts.greetPause,
    disableReverseLookup: !opts.reverseDns,
    resolver: reverseResolver(opts.dnsTimeout) as unknown as SMTPServerOptions['resolver'],
    onConnect: onConnect(ctx),
    onMailFrom: requireTls(ctx, onMailFrom(ctx)),
    onRcptTo: onRcptTo(ctx),
    onData: onData(ctx),
    onClose,
    // PROXY protocol v1/v2 from these balancers only (src/patch/smtp-proxy.ts)
    proxyFrom: opts.proxyFrom.length ? proxyMatcher(opts.proxyFrom) : undefined,
    proxyTimeout: opts.proxyTimeout,
    ...limitOptions(opts),
  };
  // the implicit-TLS listener (port 465 style): a second SMTPServer, same handlers, TLS from the first byte.
  // SMTPServer changes its options object in place: each gets its own copy
  const servers = [new SMTPServer({ ...smtpOptions })];
  if (opts.tlsPort !== undefined) servers.push(new SMTPServer({ ...smtpOptions, secure: true }));
  const [smtp] = servers as [SMTPServer, ...SMTPServer[]];
  const closeAll = (): Promise<unknown> => Promise.all(servers.map((s) => new Promise<void>((done) => s.close(() => done()))));
  let monitoring: Monitoring | undefined;
  if (opts.metrics) {
    const at = opts.metrics;
    monitoring = await startMonitoring(at, { store: ctx.store, pool: ctx.pool, listening: () => servers.every((x) => x.server.listening) })
      .catch(async (err: Error) => {
        await unwind();
        throw new OptionError('metrics', `cannot listen on ${formatAddress(at.host, at.port)}: ${err.message}`);
      });
    const started = monitoring;
    undo.push(() => started.close());
  }
  for (const [i, server] of servers.entries()) {
    const [host, port] = i === 0 ? [opts.host, opts.port] : [opts.tlsHost!, opts.tlsPort!];
    // a failed listen is reported once, by the error below, not also by the logging handler
    const quiet = (): void => {};
    server.on('error', quiet);
    await new Promise<void>((ok, fail) => {
      server.server.once('error', fail);
      server.listen(port, host, () => {
        server.server.off('error', fail);
        ok();
      });
    }).catch(async (err: Error) => {
      if (i > 0) await closeAll();
      await unwind();
      throw new Error(`cannot listen on ${formatAddress(host, port)}${i > 0 ? ' (implicit TLS)' : ''}: ${err.message}`, { cause: err });
    });
    server.off('error', quiet);
    server.on('error', (err) => logSmtpError(err, i > 0));
  }
  runner?.start();
  const address = smtp.server.address() as AddressInfo;
  const tlsAddress = servers[1]?.server.address() as AddressInfo | undefined;
  // the CLI prints its own "listening on" line: at info this would say it twice
  log.debug('listening on %s, queue %s', formatAddress(address.address, address.port), queueDir);

  let closing: Promise<void> | undefined;
  return {
    host: address.address,
    port: address.port,
    queueDir,
    store,
    receiver,
    options: opts,
    runner,
    tls: tlsAddress && { host: tlsAddress.address, port: tlsAddress.port },
    async reloadTls() {
      describeTls(await reloadTls(ctx, servers), 'reload');
    },
    metricsHost: monitoring?.host,
    metricsPort: monitoring?.port,
    close() {
      closing ??= (async () => {
        monitoring?.stopping();
        await closeAll();
        await control.close();
        const runners = [...(runner ? [runner] : []), ...passes];
        const cutShort = await Promise.all(runners.map((r) => r.stop(opts.shutdownGrace)));
        await pool.close();
        for (const [i, r] of runners.entries()) await r.releaseLeases(cutShort[i]!);
        await ctx.spoolSync.close();
        await store.close();
        await monitoring?.close();
        lock.release();
        await logging.close();
      })();
      return closing;
    },
  };
}
