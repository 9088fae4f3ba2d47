/** The receiving daemon: wires receiver, queue store, worker pool and smtp-server together. */
import { resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { createReceiver, overrides } from '../core/load.ts';
import { log } from '../core/log.ts';
import type { Receiver } from '../core/receiver.ts';
import { DirSyncer, ensureSpool, removeOrphans, spoolDir } from '../core/spool.ts';
import { QueueLock, describeOwner } from '../core/lock.ts';
import { QueueStore } from '../core/store.ts';
import { onData } from './accept.ts';
import { startControl, type ControlServer } from './control-server.ts';
import type { Context } from './context.ts';
import { reverseResolver } from './lookup.ts';
import { resolveOptions, type ResolvedOptions, type ServeOptions } from './options.ts';
import { WorkerPool } from './pool.ts';
import { QueueRunner } from './runner.ts';
import { deliveryPass } from './runqueue.ts';
import { onConnect, onMailFrom, onRcptTo } from './session.ts';

export interface RunningServer {
  host: string;
  port: number;
  queueDir: string;
  store: QueueStore;
  receiver: Receiver;
  options: ResolvedOptions;
  /** The queue runner, when this process delivers. */
  runner: QueueRunner | undefined;
  /** Stops accepting, ends sessions, closes the pool and the queue. */
  close(): Promise<void>;
}

function assertPatched(): void {
  // The greeting pause and enhanced-code handling come from patches/smtp-server+*.patch (patch-package).
  if ((SMTPServer as unknown as { smtpReceivePatch?: number }).smtpReceivePatch !== 1) {
    throw new Error('smtp-server is not patched: run `npm ci` (its postinstall runs patch-package) or `npx patch-package`');
  }
}

export async function startServer(options: ServeOptions = {}): Promise<RunningServer> {
  assertPatched();
  const opts = resolveOptions(options);
  const receiverPath = opts.receiverPath ? resolve(opts.receiverPath) : undefined;
  const receiver = await createReceiver(receiverPath, { domains: opts.domains, queueDir: '', hostname: opts.hostname });
  const queueDir = resolve(opts.queueDir ?? receiver.queueDirectory());
  receiver.config = { ...receiver.config, queueDir };

  await ensureSpool(queueDir);
  // one owner per queue: a daemon already on it refuses us at once; a queue command is waited for
  const lock = await QueueLock.acquire(queueDir, 'serve', {
    waitMs: opts.lockWait, refuseAt: ['serve'],
    onWait: (owner) => log.info('queue %s is in use by %s; waiting up to %d ms (--lock-wait)', queueDir, describeOwner(owner), opts.lockWait),
  });
  const undo: Array<() => Promise<void> | void> = [() => lock.release()];
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
    if (receiver.doSyslog()) log.warn('doSyslog() is true, but syslog output is not implemented yet: logging to stderr');
    await receiver.prestart(receiver.config);

    pool = new WorkerPool(
      { receiverPath, queueDir, domains: opts.domains, hostname: opts.hostname, lockFd: lock.fd },
      { size: opts.workers, maxQueue: opts.workerQueue },
    );
    const started = pool;
    undo.push(() => started.close());
    await pool.ready();
    await store.recordReceiver(receiverPath);
    const runnerOptions = {
      retry: { minDelay: opts.retryMin, maxDelay: opts.retryMax, maxLifetime: opts.maxLifetime },
      deliverTimeout: opts.deliverTimeout,
    };
    const canDeliver = overrides(receiver, 'deliver');
    if (opts.runner && canDeliver) {
      runner = new QueueRunner(store, pool, { ...runnerOptions, pollInterval: opts.pollInterval });
    } else if (opts.runner) {
      log.info('the receiver has no deliver(): messages stay queued (see runqueue)');
    }
    const live = runner;
    control = await startControl({
      queueDir, store, receiverPath,
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
    maxRecipients: receiver.maxRecipients(),
    maxDataLength: receiver.maxDataLength(),
    addEnvelope: receiver.addEnvelope(),
    hooks: {
      checkAccess: overrides(receiver, 'checkAccess'),
      checkMailFrom: overrides(receiver, 'checkMailFrom'),
      checkRcptTo: overrides(receiver, 'checkRcptTo'),
      predeliver: overrides(receiver, 'predeliver'),
    },
  };

  const smtpOptions: SMTPServerOptions & { earlyTalkerDelay: number } = {
    name: opts.hostname,
    banner: 'smtp-receive',
    logger: false,
    disabledCommands: ['AUTH', 'STARTTLS'],
    hideSTARTTLS: true,
    hideENHANCEDSTATUSCODES: false,
    size: ctx.maxDataLength,
    maxClients: opts.maxClients,
    socketTimeout: opts.socketTimeout,
    closeTimeout: 5000,
    earlyTalkerDelay: opts.greetPause,
    disableReverseLookup: !opts.reverseDns,
    resolver: reverseResolver(opts.dnsTimeout) as unknown as SMTPServerOptions['resolver'],
    onConnect: onConnect(ctx),
    onMailFrom: onMailFrom(ctx),
    onRcptTo: onRcptTo(ctx),
    onData: onData(ctx),
  };
  const smtp = new SMTPServer(smtpOptions);
  smtp.on('error', (err) => log.warn('smtp: %s', err.message));

  await new Promise<void>((ok, fail) => {
    smtp.server.once('error', fail);
    smtp.listen(opts.port, opts.host, () => {
      smtp.server.off('error', fail);
      ok();
    });
  }).catch(async (err: Error) => {
    await unwind();
    throw new Error(`cannot listen on ${opts.host}:${opts.port}: ${err.message}`, { cause: err });
  });
  runner?.start();
  const address = smtp.server.address() as AddressInfo;
  log.info('listening on %s:%d, queue %s', address.address, address.port, queueDir);

  let closing: Promise<void> | undefined;
  return {
    host: address.address,
    port: address.port,
    queueDir,
    store,
    receiver,
    options: opts,
    runner,
    close() {
      closing ??= (async () => {
        await new Promise<void>((done) => smtp.close(() => done()));
        await control.close();
        const runners = [...(runner ? [runner] : []), ...passes];
        const cutShort = await Promise.all(runners.map((r) => r.stop(opts.shutdownGrace)));
        await pool.close();
        for (const [i, r] of runners.entries()) await r.releaseLeases(cutShort[i]!);
        await ctx.spoolSync.close();
        await store.close();
        lock.release();
      })();
      return closing;
    },
  };
}
