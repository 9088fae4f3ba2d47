/**
 * The logger in-process (startTestServer with a stream for the lines): the
 * `log.*` calls and the event lines share one pino logger and one format, and
 * a worker's `message.log` reaches it and the `hookLog` event, tagged with the id.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { on, type HookLogEvent } from '../src/core/events.ts';
import { log } from '../src/core/log.ts';
import { startTestServer } from '../src/testing.ts';
import { sendTraffic, until } from './helpers/logs.ts';

const RECEIVER = new URL('./fixtures/logs-receiver.ts', import.meta.url).pathname;

type Line = { level: string; msg: string; event?: string; id?: string };

describe('the logger, in-process', () => {
  it('log.* lines and event lines are JSON lines of one logger; message.log from a worker is a hook line and a hookLog event', async () => {
    const out: string[] = [];
    const hookEvents: HookLogEvent[] = [];
    const off = on('hookLog', (e) => hookEvents.push(e));
    const server = await startTestServer({
      receiverPath: RECEIVER, logFormat: 'json', logLevel: 'info', logStream: { write: (l: string) => out.push(l) }, retryMin: 600_000,
    });
    let ok: string;
    try {
      log.info('a plain line: %d%% of %s', 50, 'it');
      ({ ok } = await sendTraffic(server.port));
      await until(() => hookEvents.length >= 2 && out.some((l) => l.includes('"event":"delivered"')), 'the hook lines', 30_000, () => out.join(''));
    } finally {
      off();
      await server.stop();
    }
    const lines = out.map((l) => JSON.parse(l) as Line);
    assert.ok(lines.some((l) => l.level === 'info' && l.msg === 'a plain line: 50% of it' && l.event === undefined), out.join(''));
    const hook = lines.find((l) => l.event === 'hook' && l.id === ok);
    assert.equal(hook?.msg, `${ok}: deliver: trying ok@localhost`);
    assert.ok(hookEvents.some((e) => e.id === ok && e.level === 'info' && e.text === `${ok}: deliver: trying ok@localhost`), JSON.stringify(hookEvents));

    // stopped: the plain stderr log is back, and nothing more reaches the stream
    const before = out.length;
    const write = process.stderr.write;
    let plain = '';
    process.stderr.write = ((s: string) => { plain += s; return true; }) as typeof process.stderr.write;
    try {
      log.warn('after the stop');
    } finally {
      process.stderr.write = write;
    }
    assert.match(plain, /^\d{4}-\d\d-\d\dT[\d:.]+Z warn after the stop\n$/);
    assert.equal(out.length, before);
  });
});
