/**
 * A delivery task in a worker: the attempts of one or more messages, run
 * concurrently, answered together. When some are still running at the task's
 * `reportAt`, the results so far go to the main thread on the results channel
 * first: if the pool then ends this worker at the time limit (a deliver that
 * hangs), the messages that finished keep their outcomes.
 */
import { BroadcastChannel } from 'node:worker_threads';
import { stackOf } from '../core/log.ts';
import type { Receiver } from '../core/receiver.ts';
import type { QueueStore } from '../core/store.ts';
import { WORKER_RESULTS_CHANNEL, type DeliverOutcome, type DeliverPartial, type DeliverTask, type ResultOf } from '../core/tasks.ts';
import { deliverOnce } from './deliver.ts';

let channel: BroadcastChannel | undefined;

export async function deliverBatch(receiver: Receiver, openStore: () => Promise<QueueStore>, task: DeliverTask): Promise<ResultOf['deliver']> {
  const results: Array<DeliverOutcome | null> = task.items.map(() => null);
  let reporting = false;
  const report = (): void => {
    channel ??= new BroadcastChannel(WORKER_RESULTS_CHANNEL);
    const partial: DeliverPartial = { batch: task.batch, results };
    channel.postMessage(partial);
  };
  const settled = (i: number, outcome: DeliverOutcome): void => {
    results[i] = outcome;
    if (reporting) report(); // past reportAt: each outcome goes to the main thread at once
  };
  const attempts = task.items.map((item, i) => deliverOnce(receiver, openStore, item).then(
    (r) => settled(i, r),
    (thrown: unknown) => settled(i, { ok: false, error: stackOf(thrown) }),
  ));
  let timer: NodeJS.Timeout | undefined;
  if (task.items.length > 1) {
    timer = setTimeout(() => {
      reporting = true;
      report();
    }, Math.max(0, task.reportAt - Date.now()));
  }
  await Promise.all(attempts);
  clearTimeout(timer);
  return { ok: true, results: results as DeliverOutcome[] };
}
