/** `smtp-receive runqueue`: one pass over the queue, then a summary; safe next to a running daemon. */
import { parseArgs } from 'node:util';
import { createReceiver, overrides } from '../core/load.ts';
import { isId } from '../core/id.ts';
import { QueueStore } from '../core/store.ts';
import { CommandUsageError, queueDirFlag, wholeNumber as num } from './command.ts';
import { findReceiver } from './find-receiver.ts';
import { WorkerPool } from './pool.ts';
import { QueueRunner } from './runner.ts';

export const RUNQUEUE_USAGE = `Usage: smtp-receive runqueue [--receiver FILE] [--queue DIR] [ids...]

Run one delivery pass: every due message, or the given ids whether due or not
(messages leased by a running daemon and held messages are skipped). Prints a
summary and exits 0, or 1 when an attempt failed, 2 on a usage error.

Options:
  --receiver FILE          receiver module (default: the one serve recorded in the queue)
  --queue DIR              queue directory (default ./queue)
  --workers N              worker threads (default 1)
  --deliver-timeout MS     time limit of one deliver (default 300000)
  --retry-min MS, --retry-max MS, --max-lifetime MS   retry schedule (defaults 300000, 4000000, 5 days)
  -h, --help               show this help
`;


export async function runqueue(argv: string[], out = process.stdout, err = process.stderr): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: {
        receiver: { type: 'string' }, queue: { type: 'string' }, workers: { type: 'string' },
        'deliver-timeout': { type: 'string' }, 'retry-min': { type: 'string' }, 'retry-max': { type: 'string' },
        'max-lifetime': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new CommandUsageError((e as Error).message);
  }
  const { values: v, positionals: ids } = parsed;
  if (v.help) {
    out.write(RUNQUEUE_USAGE);
    return 0;
  }
  for (const id of ids) if (!isId(id)) throw new CommandUsageError(`${JSON.stringify(id)} is not a queue id`);
  const workers = num('workers', v.workers) ?? 1;
  const deliverTimeout = num('deliver-timeout', v['deliver-timeout']);
  const retry = {
    minDelay: num('retry-min', v['retry-min']), maxDelay: num('retry-max', v['retry-max']),
    maxLifetime: num('max-lifetime', v['max-lifetime']),
  };
  const queueDir = queueDirFlag(v.queue);
  const store = await QueueStore.open(queueDir);
  try {
    const found = findReceiver(v.receiver, store, (line) => err.write(`smtp-receive: ${line}\n`));
    const receiver = await createReceiver(found.path, { domains: ['localhost'], queueDir, hostname: 'localhost' });
    if (!overrides(receiver, 'deliver')) {
      err.write('smtp-receive: the receiver has no deliver(); nothing to do\n');
      return 1;
    }
    const unknown = ids.filter((id) => !store.has(id));
    for (const id of unknown) err.write(`smtp-receive: ${id}: no such message in ${queueDir}\n`);
    const pool = new WorkerPool({ receiverPath: found.path, queueDir, domains: ['localhost'], hostname: 'localhost' }, { size: workers });
    try {
      await pool.ready();
      const clean = Object.fromEntries(Object.entries(retry).filter(([, x]) => x !== undefined));
      const runner = new QueueRunner(store, pool, { retry: clean, deliverTimeout });
      const s = await runner.runOnce(ids.length ? ids.filter((id) => !unknown.includes(id)) : undefined);
      out.write(`runqueue: ${s.attempted} attempted, ${s.delivered} delivered, ${s.deferred} deferred, ${s.held} held, ${s.skipped} skipped\n`);
      return unknown.length > 0 || s.deferred + s.held > 0 ? 1 : 0;
    } finally {
      await pool.close();
    }
  } finally {
    await store.close();
  }
}
