/** Putting messages straight into a queue (no SMTP), for queue-runner tests. */
import { mkdir, writeFile } from 'node:fs/promises';
import { newId } from '../../src/core/id.ts';
import { spoolDir, spoolPath } from '../../src/core/spool.ts';
import type { QueueRecord, QueueStore } from '../../src/core/store.ts';

export interface TestMessage {
  to: string[];
  from?: string;
  body?: string;
  /** Arrival and first due time (ms). */
  time: number;
  /** Store as a spool file instead of inline. */
  spooled?: boolean;
}

export async function enqueueTest(store: QueueStore, m: TestMessage): Promise<QueueRecord> {
  const id = newId();
  const bytes = Buffer.from(m.body ?? `Subject: test ${id}\r\n\r\nbody\r\n`);
  const textFile = spoolPath(store.queueDir, id);
  if (m.spooled) {
    await mkdir(spoolDir(store.queueDir), { recursive: true });
    await writeFile(textFile, bytes);
  }
  const record: QueueRecord = {
    v: 1,
    msg: {
      id, peerAddr: '127.0.0.1', peerHost: '', ident: '', helo: 'test', mimeType: '7BIT',
      from: m.from ?? 'sender@example.org', to: m.to, time: m.time, textFile, size: bytes.length,
    },
    state: 'queued', storage: m.spooled ? 'file' : 'inline', attempts: 0, nextAttempt: m.time,
  };
  await store.enqueue(record, m.spooled ? undefined : bytes);
  return record;
}
