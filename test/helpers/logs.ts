/** Reading log lines and events in tests: the traffic the logs tests send, and a bounded wait. */
import { after, before } from 'node:test';
import { on, type ConnectionRefusedEvent } from '../../src/core/events.ts';
import { RawClient, queuedId } from './smtp.ts';

export const BODY = 'Subject: hi\r\n\r\nhello\r\n';

/**
 * The JSON lines of a file or stream another process is still writing: only the
 * lines up to the last newline, since a read can land in the middle of a write.
 */
export function jsonLines<T>(text: string): T[] {
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l) as T);
}

/** The connectionRefused events published while the calling suite runs. */
export function refusals(): ConnectionRefusedEvent[] {
  const seen: ConnectionRefusedEvent[] = [];
  let off = (): void => {};
  before(() => { off = on('connectionRefused', (e) => seen.push(e)); });
  after(() => off());
  return seen;
}

/** Waits (polling, at most `ms`) until `check` is true. */
export async function until(check: () => boolean, what: string, ms = 30_000, explain = (): string => ''): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${explain()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface Traffic {
  /** Queued and delivered. */
  ok: string;
  /** Queued; its deliver fails (defer@). */
  deferred: string;
}

/**
 * One session against test/fixtures/events-receiver.ts (or logs-receiver.ts): a message
 * delivered, one deferred, a recipient refused at RCPT, a message refused by predeliver;
 * then a second session that disconnects in the middle of DATA.
 */
export async function sendTraffic(port: number): Promise<Traffic> {
  const c = await RawClient.ready(port);
  const ok = queuedId(await c.send('a@example.org', ['ok@localhost'], BODY));
  const deferred = queuedId(await c.send('b@example.org', ['defer@localhost'], BODY));
  const [, rcpt] = await c.envelope('c@example.org', ['nobody@localhost']);
  if (rcpt!.code !== 550) throw new Error(`RCPT nobody@: expected 550, got ${rcpt!.text}`);
  await c.command('RSET');
  const spam = await c.send('spam@example.org', ['ok@localhost'], BODY);
  if (spam.code !== 554) throw new Error(`predeliver: expected 554, got ${spam.text}`);
  await c.quit();

  const gone = await RawClient.ready(port);
  await gone.envelope('d@example.org', ['ok@localhost']);
  const r = await gone.command('DATA');
  if (r.code !== 354) throw new Error(`DATA: expected 354, got ${r.text}`);
  gone.write('Subject: cut short\r\n\r\nthe first line, and then nothing');
  // the bytes reach the server before the close (no reply comes for them)
  await new Promise((res) => setTimeout(res, 300));
  gone.socket.destroy();
  return { ok, deferred };
}
