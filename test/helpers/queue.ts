/** Reading what a queue holds, for assertions: the record and the stored bytes, whatever the storage. */
import { readFile } from 'node:fs/promises';
import { QueueStore, type QueueRecord } from '../../src/core/store.ts';

export interface Stored {
  record: QueueRecord;
  bytes: Buffer;
}

export async function storedMessage(store: QueueStore, id: string): Promise<Stored | undefined> {
  const record = store.get(id);
  if (!record) return undefined;
  const bytes = record.storage === 'inline' ? store.getInlineBody(id)! : await readFile(record.msg.textFile);
  return { record, bytes: Buffer.from(bytes) };
}

/** The stored bytes after the trace headers we prepend (Received:, X-Envelope-To:). */
export function afterTraceHeaders(bytes: Buffer): Buffer {
  let pos = 0;
  for (;;) {
    const eol = bytes.indexOf('\r\n', pos);
    const line = bytes.subarray(pos, eol).toString('latin1');
    const isTrace = /^(Received|X-Envelope-To):/i.test(line) || (/^[ \t]/.test(line) && pos > 0);
    if (!isTrace) return bytes.subarray(pos);
    pos = eol + 2;
  }
}
