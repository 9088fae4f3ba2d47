/**
 * The records a queue listing shows, read from the store a page at a time
 * (no long-lived read transaction, so a slow reader never holds LMDB pages
 * from reuse while the daemon writes), in id (= arrival) order or in the order
 * of the ids asked for. The daemon's control socket and the offline command
 * both list from here; showqueue.ts formats.
 */
import { readFile } from 'node:fs/promises';
import { readHeaded, spliceInline } from '../core/head.ts';
import type { QueueRecord, QueueStore } from '../core/store.ts';

export type ListItem = { record: QueueRecord; body?: Buffer } | { missing: string };

const PAGE = 256;

async function withBody(store: QueueStore, record: QueueRecord): Promise<ListItem | undefined> {
  if (record.storage === 'inline') {
    const inline = store.getInlineBody(record.msg.id);
    // gone between the two reads: delivered or deleted meanwhile
    return inline ? { record, body: record.head ? spliceInline(inline, record.head) : Buffer.from(inline) } : undefined;
  }
  try {
    return { record, body: record.head ? await readHeaded(record.msg.textFile, record.head) : await readFile(record.msg.textFile) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !store.has(record.msg.id)) return undefined;
    throw err;
  }
}

/** The listing's items: records (with their stored bytes when `bodies`), and ids asked for that are not queued. */
export async function* storeItems(store: QueueStore, o: { ids?: string[]; bodies?: boolean } = {}): AsyncGenerator<ListItem> {
  const item = async (record: QueueRecord): Promise<ListItem | undefined> => (o.bodies ? withBody(store, record) : { record });
  if (o.ids) {
    for (const id of o.ids) {
      const record = store.get(id);
      const it = record ? await item(record) : undefined;
      yield it ?? { missing: id };
    }
    return;
  }
  let after: string | undefined;
  for (;;) {
    const page = [...store.messages.getRange({ start: after, limit: PAGE + 1 })].filter(({ key }) => key !== after);
    if (page.length === 0) return;
    for (const { value } of page) {
      const it = await item(value);
      if (it) yield it;
    }
    after = page[page.length - 1]!.key;
  }
}
