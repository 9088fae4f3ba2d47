/**
 * Piscina worker: loads the user's receiver module once, then runs hooks for
 * tasks from the main thread. Results are tagged plain data.
 */
import { BroadcastChannel, workerData } from 'node:worker_threads';
import { StoredBody } from '../core/body.ts';
import type { HookLogEvent } from '../core/events.ts';
import { spliceInline } from '../core/head.ts';
import { createReceiver } from '../core/load.ts';
import { setLogLevel, setLogSink, stackOf } from '../core/log.ts';
import { Message } from '../core/message.ts';
import { SmtpReply, toReply } from '../core/reply.ts';
import { QueueLock } from '../core/lock.ts';
import { QueueStore } from '../core/store.ts';
import { WORKER_LOG_CHANNEL, type PredeliverResult, type PredeliverTask, type ResultOf, type Task, type WorkerSetup } from '../core/tasks.ts';
import { Authenticator, dmarcRejects } from './auth.ts';
import { deliverBatch } from './deliver-batch.ts';

const setup = workerData as WorkerSetup;
// log lines go to the main thread's logger (src/main/log/worker-lines.ts), tagged with the message id
if (setup.logLevel) setLogLevel(setup.logLevel);
const toMain = new BroadcastChannel(WORKER_LOG_CHANNEL);
toMain.unref();
setLogSink((level, text, fields) => {
  const line: HookLogEvent = { level, text };
  if (fields?.id) line.id = fields.id;
  toMain.postMessage(line);
});
const receiver = await createReceiver(setup.receiverPath, {
  domains: setup.domains, queueDir: setup.queueDir, hostname: setup.hostname,
}, setup.builtin);
const authenticator = setup.auth ? new Authenticator(setup.auth, setup.hostname) : undefined;

// the owner's environment, shared by lmdb-js across its threads, under the owner's lock; opened on first need
let store: Promise<QueueStore> | undefined;
const openStore = (): Promise<QueueStore> => (store ??= (async () => {
  QueueLock.adopt(setup.queueDir, setup.lockFd);
  return QueueStore.open(setup.queueDir);
})());

async function predeliver(task: PredeliverTask): Promise<PredeliverResult> {
  try {
    const message = new Message(task.message);
    let inline = task.inline ? Buffer.from(task.inline.buffer, task.inline.byteOffset, task.inline.byteLength) : undefined;
    let body: StoredBody;
    let done: PredeliverResult & { ok: true } = { ok: true };
    if (authenticator) {
      const { auth, head } = await authenticator.run({
        inline, file: message.textFile, traceLength: task.traceLength, peerAddr: message.peerAddr, helo: message.helo, from: message.from,
      });
      if (setup.auth!.dmarcReject && dmarcRejects(auth)) {
        const domain = auth.dmarc.domain ?? 'the sender domain';
        return { ok: false, reply: new SmtpReply(550, '5.7.1', `Message rejected: DMARC policy of ${domain} is reject and it failed`).toData(), internal: false, reason: 'dmarc' };
      }
      message.auth = auth;
      message.size += head.bytes.length - head.cut;
      inline = inline && spliceInline(inline, head);
      body = new StoredBody(inline, message.size, message.textFile, inline ? undefined : head);
      done = { ok: true, auth, head };
    } else {
      body = new StoredBody(inline, message.size, message.textFile);
    }
    await receiver.predeliver(message, body);
    return done;
  } catch (thrown) {
    const { reply, internal } = toReply(thrown);
    if (!internal) return { ok: false, reply: reply.toData(), internal: false };
    return { ok: false, reply: reply.toData(), internal: true, error: stackOf(thrown) };
  }
}

export default async function run(task: Task): Promise<ResultOf[Task['kind']]> {
  switch (task.kind) {
    case 'ping':
      return { ok: true };
    case 'predeliver':
      return predeliver(task);
    case 'deliver':
      return deliverBatch(receiver, openStore, task);
    case 'expired':
      try {
        const message = new Message(task.message);
        message.attempts = task.attempts;
        await receiver.expired(message);
        return { ok: true };
      } catch (thrown) {
        return { ok: false, error: stackOf(thrown) };
      }
  }
}
