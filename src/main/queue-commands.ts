/** `smtp-receive flush | delete | hold | release | requeue`: the queue operations as commands. */
import { isId } from '../core/id.ts';
import { deleteMessages, flush, hold, release, requeue, type OpResult } from '../core/queue-ops.ts';
import { CommandUsageError, queueDirFlag, parseCommandArgs } from './command.ts';
import { withQueue, type AccessOptions } from './queue-access.ts';

export const QUEUE_OPS_USAGE = `Usage: smtp-receive flush [--queue DIR]
       smtp-receive delete  [--queue DIR] ID... | ALL
       smtp-receive hold    [--queue DIR] ID... | ALL
       smtp-receive release [--queue DIR] ID... | ALL
       smtp-receive requeue [--queue DIR] ID... | ALL

flush makes every queued message due now (postqueue -f); delete removes
messages (postsuper -d); hold keeps them from delivery (-h) until release (-H);
requeue makes them due now with a fresh attempt count and lifetime (-r).
While serve runs they go through its control socket (QUEUE/control.sock);
otherwise they open the queue themselves. A message being delivered is skipped
("busy": try again; flush only counts it, as it is being attempted already).
Exit status: 0 done, 1 some ids unknown or busy, 2 usage error.
`;

const OPS = { delete: deleteMessages, hold, release, requeue } as const;
const PAST = { delete: 'Deleted', hold: 'Placed on hold', release: 'Released from hold', requeue: 'Requeued', flush: 'Made due' };

export type QueueOp = keyof typeof OPS | 'flush';

export function isQueueOp(name: string | undefined): name is QueueOp {
  return name === 'flush' || (name !== undefined && Object.hasOwn(OPS, name));
}

/**
 * Runs a queue operation: through the daemon when one owns the queue, else on
 * the store directly (this process takes the queue's lock meanwhile).
 */
export function queueOp(queueDir: string, op: QueueOp, ids: string[] | 'ALL' = 'ALL', o: AccessOptions = {}): Promise<OpResult> {
  const role = 'queue-op';
  return withQueue(queueDir, role, (a) => {
    if (a.via === 'daemon') return a.client.post<OpResult>(`/${op}`, op === 'flush' ? {} : { ids });
    return op === 'flush' ? flush(a.store) : OPS[op](a.store, ids);
  }, o);
}

export async function queueOpCommand(op: QueueOp, argv: string[], out = process.stdout, err = process.stderr): Promise<number> {
  const parsed = parseCommandArgs(argv, { queue: { type: 'string' }, help: { type: 'boolean', short: 'h' } });
  const { values: v, positionals } = parsed;
  if (v.help) {
    out.write(QUEUE_OPS_USAGE);
    return 0;
  }
  let ids: string[] | 'ALL' = [];
  if (op === 'flush') {
    if (positionals.length) throw new CommandUsageError('flush takes no ids (it makes every queued message due)');
  } else {
    if (positionals.length === 0) throw new CommandUsageError(`${op}: give queue ids, or ALL`);
    if (positionals.includes('ALL')) {
      if (positionals.length > 1) throw new CommandUsageError(`${op}: ALL cannot be mixed with ids`);
      ids = 'ALL';
    } else {
      for (const id of positionals) if (!isId(id)) throw new CommandUsageError(`${op}: ${JSON.stringify(id)} is not a queue id`);
      ids = positionals;
    }
  }
  const queueDir = queueDirFlag(v.queue);
  const r = await queueOp(queueDir, op, ids);
  // flush wants every message attempted now: one being delivered is, so it is no failure
  const busyFails = op !== 'flush';
  for (const id of r.missing) err.write(`smtp-receive: ${id}: no such message in ${queueDir}\n`);
  if (busyFails) for (const id of r.busy) err.write(`smtp-receive: ${id}: being delivered right now, not changed; try again\n`);
  const beingDelivered = !busyFails && r.busy.length ? `; ${r.busy.length} being delivered right now` : '';
  out.write(`smtp-receive: ${PAST[op]}: ${r.changed.length} message${r.changed.length === 1 ? '' : 's'}${beingDelivered}\n`);
  return r.missing.length || (busyFails && r.busy.length) ? 1 : 0;
}
