/** `smtp-receive runqueue`: one pass over the queue, then a summary; run by the daemon when one owns the queue. */
import { resolve } from 'node:path';
import { overrides } from '../core/load.ts';
import { isId } from '../core/id.ts';
import type { QueueStore } from '../core/store.ts';
import { ControlError } from './control-client.ts';
import { CommandUsageError, queueDirFlag, wholeNumber as num, parseCommandArgs } from './command.ts';
import { createFound, findReceiver } from './find-receiver.ts';
import { BUILTIN_FLAGS, BUILTIN_USAGE, builtinFlagValues, builtinFromFlags } from './builtin-flags.ts';
import type { BuiltinReceiver } from '../receivers/index.ts';
import { describeBuiltin } from '../receivers/recorded.ts';
import { WorkerPool } from './pool.ts';
import { withQueue } from './queue-access.ts';
import { QueueRunner, type NotDelivered, type RunnerOptions, type RunSummary } from './runner.ts';
import type { RetryPolicy } from '../core/schedule.ts';

export const RUNQUEUE_USAGE = `Usage: smtp-receive runqueue [--receiver FILE | built-in flags] [--queue DIR] [ids...]

Run one delivery pass: every due message, or the given ids whether due or not
(messages being delivered and held messages are skipped). While serve runs, it
runs the pass (with its receiver and settings) through its control socket.
Otherwise it delivers with the receiver serve recorded in the queue: its module,
or its built-in receiver with the settings it ran with (never a secret: a webhook
secret comes from the file serve read it from, or must be given again). The
built-in flags choose a built-in receiver instead; those that only configure the
recorded one (--webhook-secret, --webhook-timeout, --relay-timeout) change it.
Prints a summary and exits 0, or 1 when an attempt failed, 2 on a usage error.

Options:
  --receiver FILE          receiver module (default: the one serve recorded in the queue)
${BUILTIN_USAGE}  --queue DIR              queue directory (default ./queue)
  --workers N              worker threads (default 1)
  --deliver-timeout MS     time limit of one deliver (default 300000)
  --retry-min MS, --retry-max MS, --max-lifetime MS   retry schedule (defaults 300000, 4000000, 5 days)
  -h, --help               show this help
`;


export async function runqueue(argv: string[], out = process.stdout, err = process.stderr): Promise<number> {
  const parsed = parseCommandArgs(argv, {
        receiver: { type: 'string' }, ...BUILTIN_FLAGS, queue: { type: 'string' }, workers: { type: 'string' },
        'deliver-timeout': { type: 'string' }, 'retry-min': { type: 'string' }, 'retry-max': { type: 'string' },
        'max-lifetime': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      });
  const { values: v, positionals: ids } = parsed;
  if (v.help) {
    out.write(RUNQUEUE_USAGE);
    return 0;
  }
  for (const id of ids) if (!isId(id)) throw new CommandUsageError(`${JSON.stringify(id)} is not a queue id`);
  const builtin = builtinFromFlags(builtinFlagValues(v), v.receiver);
  const workers = num('workers', v.workers) ?? 1;
  const deliverTimeout = num('deliver-timeout', v['deliver-timeout']);
  const retry = {
    minDelay: num('retry-min', v['retry-min']), maxDelay: num('retry-max', v['retry-max']),
    maxLifetime: num('max-lifetime', v['max-lifetime']),
  };
  const queueDir = queueDirFlag(v.queue);
  let result: RunQueueResult;
  try {
    result = await runQueue({
      queueDir, receiverPath: v.receiver, builtin, ids: ids.length ? ids : undefined, workers, deliverTimeout,
      retry: Object.fromEntries(Object.entries(retry).filter(([, x]) => x !== undefined)),
      say: (line) => err.write(`smtp-receive: ${line}\n`),
    });
  } catch (e) {
    if (e instanceof NothingToDeliverWith) {
      err.write(`smtp-receive: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  for (const id of result.missing) err.write(`smtp-receive: ${id}: no such message in ${queueDir}\n`);
  for (const n of result.notDelivered) err.write(`smtp-receive: ${n.id}: ${n.state === 'held' ? 'expired, now on hold' : 'deferred'}: ${n.error}\n`);
  const s = result;
  out.write(`runqueue: ${s.attempted} attempted, ${s.delivered} delivered, ${s.deferred} deferred, ${s.held} held, ${s.skipped} skipped\n`);
  if (s.attempted === 0 && !ids.length && s.queued > 0) {
    const next = s.nextDue === undefined ? 'none is due (all on hold)' : `none due before ${new Date(s.nextDue).toISOString()}`;
    out.write(`runqueue: ${s.queued} message${s.queued === 1 ? '' : 's'} queued, ${next}; \`smtp-receive flush\` makes them due now\n`);
  }
  return s.missing.length > 0 || s.deferred + s.held > 0 ? 1 : 0;
}

export interface RunQueueOptions {
  queueDir: string;
  /** Receiver module; default: the one `serve` recorded in the queue (a module or a built-in receiver), else the base Receiver. */
  receiverPath?: string;
  /**
   * A built-in receiver instead. Of the kind serve recorded, and naming the same
   * root, URL or smarthost or none, it changes the recorded one: `{ kind: 'webhook',
   * options: { secret } }` gives a secret serve had inline (the queue keeps none).
   */
  builtin?: BuiltinReceiver;
  /** Only these ids, whether due or not; default: every due message. */
  ids?: string[];
  /** Worker threads. @default 1 */
  workers?: number;
  /** Time limit of one deliver, ms. @default 300000 */
  deliverTimeout?: number;
  retry?: Partial<RetryPolicy>;
  /** Where to say which receiver is used when it was not given. */
  say?: (line: string) => void;
}

export interface RunQueueResult extends RunSummary {
  /** Ids asked for that are not in the queue. */
  missing: string[];
  /** The messages attempted and not delivered, with the reason (`deliver`'s error). */
  notDelivered: NotDelivered[];
  /** Messages in the queue after the pass. */
  queued: number;
  /** When the earliest of them is due (ms since the epoch); undefined when none is (all held). */
  nextDue?: number;
}

/** The receiver has no deliver(): a queue run cannot deliver anything. */
export class NothingToDeliverWith extends Error {}

/**
 * One pass with a runner of its own (its own lease owner, so it and the
 * daemon's runner never take one message twice): every due message, or the
 * given ids whether due or not. Ids not in the queue are reported.
 */
export async function deliveryPass(
  store: QueueStore, pool: WorkerPool, o: RunnerOptions, ids: string[] | undefined, track?: Set<QueueRunner>,
): Promise<RunQueueResult> {
  const missing = (ids ?? []).filter((id) => !store.has(id));
  const runner = new QueueRunner(store, pool, { ...o, recordNotDelivered: true });
  track?.add(runner);
  try {
    const summary = await runner.runOnce(ids?.filter((id) => !missing.includes(id)));
    return { ...summary, missing, notDelivered: runner.notDelivered, queued: store.count(), nextDue: store.nextDue() };
  } finally {
    track?.delete(runner);
  }
}

/**
 * One delivery pass over a queue (what `smtp-receive runqueue` does), for
 * programs and cron: run by the daemon when one owns the queue (its receiver
 * and settings), else here, with a worker pool of its own.
 */
export async function runQueue(o: RunQueueOptions): Promise<RunQueueResult> {
  const say = o.say ?? (() => {});
  return withQueue(o.queueDir, 'runqueue', async (a) => {
    if (a.via === 'daemon') {
      const theirs = a.status.receiver ?? (a.status.builtin ? `the built-in ${describeBuiltin(a.status.builtin).name}` : 'the built-in one');
      const ours = o.builtin ? 'the built-in receiver flags' : o.receiverPath && resolve(o.receiverPath) !== a.status.receiver ? '--receiver' : undefined;
      if (ours) say(`smtp-receive serve (pid ${a.status.pid}) owns the queue: the pass runs there, with its receiver (${theirs}), not ${ours}`);
      try {
        return await a.client.post<RunQueueResult>('/runqueue', { ids: o.ids });
      } catch (err) {
        if (err instanceof ControlError && err.status === 409) throw new NothingToDeliverWith(err.message);
        throw err;
      }
    }
    const { store } = a;
    const recorded = store.recordedSetup();
    const found = findReceiver({ module: o.receiverPath, builtin: o.builtin }, recorded, say);
    // serve's hostname: a Maildir copy's file name holds it (so a copy an attempt of serve's wrote is found, not written twice)
    const config = { domains: ['localhost'], queueDir: o.queueDir, hostname: recorded.hostname ?? 'localhost' };
    const receiver = await createFound(found, config);
    if (!overrides(receiver, 'deliver')) {
      throw new NothingToDeliverWith(`the receiver has no deliver(); nothing to do${found.source === 'default' ? NONE_RECORDED : ''}`);
    }
    const pool = new WorkerPool({ receiverPath: found.path, builtin: found.builtin, ...config, lockFd: a.lock.fd }, { size: o.workers ?? 1 });
    try {
      await pool.ready();
      return await deliveryPass(store, pool, { retry: o.retry, deliverTimeout: o.deliverTimeout }, o.ids);
    } finally {
      await pool.close();
    }
  });
}

/** Said when the queue records no receiver: serve before the built-in record recorded none for a built-in one. */
const NONE_RECORDED = ' (the queue records no receiver: a serve of an earlier version recorded none for a built-in one): ' +
  'give --receiver FILE, or a built-in receiver: --maildir DIR, --webhook URL or --relay HOST[:PORT]';
