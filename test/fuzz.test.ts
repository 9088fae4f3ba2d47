/**
 * Fuzzing the command parser and the DATA path over real sockets: random and
 * mutated sessions from a seeded PRNG, pipelined in random chunks, several at
 * once. The server must never crash, answer every command exactly once and in
 * order (RFC 2920 groups, a NOOP sentinel after each, QUIT at the end), never
 * answer with an internal error, and store exactly the messages it answered
 * 250 to. Bounded in `npm test` (sessions and a time budget); more with
 *   FUZZ_ITERATIONS=2000 [FUZZ_SEED=n] node --import tsx --test test/fuzz.test.ts
 * A failure names its seed and session: rerun with that FUZZ_SEED.
 */
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { isHeaderSafe } from '../src/core/headers.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { RawClient, dotStuffBytes, isQueued, queuedId, type Reply } from './helpers/smtp.ts';
import { bareLineEnds, storedMessage } from './helpers/queue.ts';
import { mutate, randomBody, randomGroup, type Rng, mulberry32 } from './helpers/fuzz.ts';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : randomInt(2 ** 31);
const LONG = process.env.FUZZ_ITERATIONS !== undefined;
const SESSIONS = LONG ? Number(process.env.FUZZ_ITERATIONS) : 48;
/** In npm test, no new session starts after this (the count is the bound; this keeps a loaded machine in time). */
const BUDGET_MS = LONG ? Infinity : 12_000;
const PARALLEL = 4;

interface Outcome {
  /** Queue ids from 250 replies. */
  queued: string[];
}

class SessionOver extends Error {}

/** One reply, checked for shape; a 421/221 ends the session (the server must then close). */
async function reply(c: RawClient, log: string[]): Promise<Reply> {
  const r = await c.read(30_000);
  log.push(`S: ${r.text.slice(0, 120)}`);
  for (const line of r.lines) assert.match(line, /^[2-5]\d\d[ -]/, `a well-formed reply line: ${JSON.stringify(line)}`);
  assert.doesNotMatch(r.text, /internal server error/i, 'no command makes a handler throw');
  if (r.code === 421 || r.code === 221) {
    assert.ok(await c.closedByServer(10_000), `the server closes after ${r.code}`);
    throw new SessionOver();
  }
  return r;
}

/** Writes `data` in 1–3 pieces. */
async function writeChunked(c: RawClient, data: Buffer, rng: Rng): Promise<void> {
  const pieces = 1 + Math.floor(rng() * 3);
  let at = 0;
  for (let i = 0; i < pieces; i++) {
    const end = i === pieces - 1 ? data.length : at + Math.floor(rng() * (data.length - at));
    if (end > at) c.write(data.subarray(at, end));
    at = end;
    if (rng() < 0.3) await new Promise((r) => setImmediate(r));
  }
}

/** The end of DATA: the final reply, a 250 recorded. */
async function endOfData(c: RawClient, log: string[], out: Outcome): Promise<void> {
  const r = await reply(c, log);
  if (isQueued(r)) out.queued.push(queuedId(r));
}

async function fuzzSession(port: number, rng: Rng, log: string[], out: Outcome): Promise<void> {
  const c = await RawClient.connect(port);
  try {
    assert.equal((await reply(c, log)).code, 220);
    const groups = 1 + Math.floor(rng() * 8);
    for (let g = 0; g < groups; g++) {
      let lines = randomGroup(rng, g === 0);
      if (rng() < 0.4) lines = lines.map((l) => (rng() < 0.3 ? mutate(l, rng) : l));
      for (const l of lines) log.push(`C: ${JSON.stringify(l.toString('latin1').slice(0, 120))}`);
      await writeChunked(c, Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\r\n')])), rng);
      for (let i = 0; i < lines.length; i++) {
        const r = await reply(c, log);
        if (r.code !== 354) continue;
        if (i < lines.length - 1) {
          // a DATA inside the group: the lines after it went into the message
          c.write('.\r\n');
          await endOfData(c, log, out);
          break;
        }
        const body = randomBody(rng);
        const stuffed = dotStuffBytes(body);
        if (rng() < 0.05) {
          // the client vanishes mid-DATA (before its final dot): nothing may be stored
          c.write(stuffed.subarray(0, stuffed.length >> 1));
          c.socket.destroy();
          log.push('C: <gone mid-DATA>');
          return;
        }
        log.push(`C: <${body.length} bytes of DATA>`);
        await writeChunked(c, Buffer.concat([stuffed, Buffer.from('.\r\n')]), rng);
        await endOfData(c, log, out);
      }
      // the sentinel: had anything been answered twice, this would read the extra reply
      c.write('NOOP\r\n');
      log.push('C: NOOP (sentinel)');
      assert.match((await reply(c, log)).text, /^250 2\.0\.0 OK$/, 'the sentinel NOOP gets its own reply, in order');
    }
    c.write('QUIT\r\n');
    log.push('C: QUIT');
    const bye = await c.read(30_000).catch(() => undefined);
    assert.equal(bye?.code, 221, 'QUIT gets 221, nothing before it is left unread');
    assert.ok(await c.closedByServer(10_000));
  } catch (err) {
    if (!(err instanceof SessionOver)) throw err;
  } finally {
    c.socket.destroy();
  }
}

describe(`fuzz: the address parser in process (FUZZ_SEED=${SEED})`, () => {
  it('random and mutated MAIL/RCPT lines never make it throw; what it accepts is safe in a header', () => {
    const proto = SMTPConnection.prototype as unknown as { _parseAddressCommand(name: string, command: Buffer): false | { address: string } };
    const conn = Object.assign(Object.create(proto) as typeof proto, {
      id: 'fuzz', session: {}, _server: { options: {}, logger: { error() {}, info() {}, debug() {} } },
    });
    const rng = mulberry32(SEED);
    const count = LONG ? SESSIONS * 200 : 20_000;
    let accepted = 0;
    for (let i = 0; i < count; i++) {
      const group = randomGroup(rng, false).filter((l) => /^(MAIL FROM|RCPT TO)/i.test(l.toString('latin1')));
      for (let line of group) {
        if (rng() < 0.5) line = mutate(line, rng);
        const name = /^MAIL/i.test(line.toString('latin1')) ? 'mail from' : 'rcpt to';
        let parsed: false | { address: string };
        try {
          parsed = conn._parseAddressCommand(name, line);
        } catch (err) {
          throw new Error(`FUZZ_SEED=${SEED}: ${JSON.stringify(line.toString('latin1'))} threw ${(err as Error).stack}`);
        }
        if (!parsed) continue;
        accepted++;
        assert.equal(typeof parsed.address, 'string');
        assert.ok(isHeaderSafe(parsed.address), `FUZZ_SEED=${SEED}: ${JSON.stringify(parsed.address)} from ${JSON.stringify(line.toString('latin1'))}`);
        assert.ok(parsed.address.length <= 253 || !parsed.address.includes('"'), 'a quoted address within the path limit');
      }
    }
    assert.ok(accepted > 0);
  });
});

describe(`fuzz: command parser and DATA path (FUZZ_SEED=${SEED})`, () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ maxBadCommands: 40, maxSize: 300_000, maxRecipients: 20, inlineMax: 64 * 1024 });
  });
  after(async () => { await server.stop(); });

  it(`${SESSIONS} sessions${LONG ? '' : ' (or 12 s)'}: no crash, one reply per command in order, stored = answered 250`, async (t) => {
    const out: Outcome = { queued: [] };
    const started = Date.now();
    let next = 0;
    let ran = 0;
    const worker = async (): Promise<void> => {
      while (next < SESSIONS && Date.now() - started < BUDGET_MS) {
        const index = next++;
        const log: string[] = [];
        try {
          await fuzzSession(server.port, mulberry32(SEED + index), log, out);
          ran++;
        } catch (err) {
          const transcript = log.slice(-30).join('\n');
          throw new Error(`FUZZ_SEED=${SEED} session ${index} failed: ${(err as Error).message}\nlast lines:\n${transcript}`, { cause: err });
        }
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    assert.ok(ran >= Math.min(SESSIONS, 8), `ran ${ran} sessions`);
    t.diagnostic(`FUZZ_SEED=${SEED}: ${ran} sessions, ${out.queued.length} messages queued`);
    // the server still serves a plain message
    const c = await RawClient.ready(server.port);
    const last = await c.send('after@example.org', ['after@localhost'], 'Subject: after\r\n\r\nfuzz done\r\n');
    await c.quit();
    out.queued.push(queuedId(last));
    const stored = new Set(server.store.ids());
    const answered = new Set(out.queued);
    const unanswered = [...stored].filter((id) => !answered.has(id));
    const lost = [...answered].filter((id) => !stored.has(id));
    assert.deepEqual({ unanswered, lost }, { unanswered: [], lost: [] },
      `FUZZ_SEED=${SEED}: the queue holds exactly the messages answered 250 (${stored.size} stored, ${answered.size} answered)`);
    // and what is stored has CRLF line ends only, whatever bare CR/LF the client sent
    for (const id of stored) assert.equal(bareLineEnds((await storedMessage(server.store, id))!.bytes), 0, `FUZZ_SEED=${SEED}: ${id} has bare CR/LF`);
  });
});
