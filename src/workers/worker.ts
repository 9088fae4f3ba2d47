/**
 * Piscina worker: loads the user's receiver module once, then runs hooks for
 * tasks from the main thread. Results are tagged plain data.
 */
import { workerData } from 'node:worker_threads';
import { StoredBody } from '../core/body.ts';
import { createReceiver } from '../core/load.ts';
import { Message } from '../core/message.ts';
import { toReply } from '../core/reply.ts';
import type { PredeliverTask, Task, TaskResult, WorkerSetup } from '../core/tasks.ts';

const setup = workerData as WorkerSetup;
const receiver = await createReceiver(setup.receiverPath, {
  domains: setup.domains, queueDir: setup.queueDir, hostname: setup.hostname,
});

async function predeliver(task: PredeliverTask): Promise<TaskResult> {
  const message = new Message(task.message);
  const inline = task.inline ? Buffer.from(task.inline.buffer, task.inline.byteOffset, task.inline.byteLength) : undefined;
  await receiver.predeliver(message, new StoredBody(inline, message.size, message.textFile));
  return { ok: true };
}

export default async function run(task: Task): Promise<TaskResult> {
  try {
    switch (task.kind) {
      case 'predeliver':
        return await predeliver(task);
    }
  } catch (thrown) {
    const { reply, internal } = toReply(thrown);
    if (!internal) return { ok: false, reply: reply.toData(), internal: false };
    const error = thrown instanceof Error ? (thrown.stack ?? thrown.message) : String(thrown);
    return { ok: false, reply: reply.toData(), internal: true, error };
  }
}
