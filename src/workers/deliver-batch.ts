/**
 * A delivery task in a worker: the attempts of one or more messages, run
 * concurrently, answered together when they end together. An attempt that
 * ends while batch-mates still run does not wait for them: its outcome goes
 * to the main thread on its own (gathered for STRAGGLER_MS), so a slow
 * deliver (a webhook that takes seconds) holds neither the others' outcomes
 * nor their slots. From the task's `reportAt`, a little before its time
 * limit, each outcome goes at once: if the pool then ends this worker (a
 * deliver that hangs), the messages that finished keep their outcomes.
 */
import { parentPort } from 'node:worker_threads';
import { stackOf } from '../core/log.ts';
import type { Receiver } from '../core/receiver.ts';
import type { QueueStore } from '../core/store.ts';
import type { DeliverOutcome, DeliverPartial, DeliverTask, ResultOf } from '../core/tasks.ts';
import { deliverOnce } from './deliver.ts';

/**
 * How long the outcomes that ended while batch-mates still run gather before
 * they go: attempts of one batch that end within this of one another need a
 * single message, or none (the task's result carries them).
 */
const STRAGGLER_MS = 50;

export async function deliverBatch(receiver: Receiver, openStore: () => Promise<QueueStore>, task: DeliverTask): Promise<ResultOf['deliver']> {
  const results: Array<DeliverOutcome | null> = task.items.map(() => null);
  let running = task.items.length;
  let unsent: number[] = [];
  let gathering: NodeJS.Timeout | undefined;
  let late = false;
  const report = (): void => {
    clearTimeout(gathering);
    gathering = undefined;
    if (unsent.length === 0 || !parentPort) return;
    const partial: DeliverPartial = { kind: 'deliver-partial', batch: task.batch, results: unsent.map((i) => [i, results[i]!]) };
    unsent = [];
    parentPort.postMessage(partial);
  };
  const settled = (i: number, outcome: DeliverOutcome): void => {
    results[i] = outcome;
    if (--running === 0) return; // the task's result carries it
    unsent.push(i);
    if (late) report();
    else gathering ??= setTimeout(report, STRAGGLER_MS);
  };
  const attempts = task.items.map((item, i) => deliverOnce(receiver, openStore, item).then(
    (r) => settled(i, r),
    (thrown: unknown) => settled(i, { ok: false, error: stackOf(thrown) }),
  ));
  let deadline: NodeJS.Timeout | undefined;
  if (task.items.length > 1) {
    deadline = setTimeout(() => {
      late = true;
      report();
    }, Math.max(0, task.reportAt - Date.now()));
  }
  await Promise.all(attempts);
  clearTimeout(deadline);
  clearTimeout(gathering);
  return { ok: true, results: results as DeliverOutcome[] };
}
