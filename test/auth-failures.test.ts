/**
 * Repeated AUTH failures on one connection (`maxAuthFailures`, `--max-auth-failures`):
 * the Nth refusal is answered, then followed by `421 4.7.0` and the connection closes,
 * counted as a `rejected` event; the count is per connection, a 454 (the hook threw)
 * does not count, and 0 turns the limit off. Plaintext AUTH (allowInsecureAuth) over
 * loopback: the AUTH path is the same inside TLS (test/auth-smtp.test.ts).
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { on, type RejectedEvent } from '../src/core/events.ts';
import { parseServeArgs } from '../src/main/cli.ts';
import { OptionError, resolveOptions } from '../src/main/options.ts';
import { startTestServer, type TestServer } from '../src/testing.ts';
import { RawClient, type Reply } from './helpers/smtp.ts';

const AUTH = fileURLToPath(new URL('./fixtures/auth.ts', import.meta.url));
const plain = (user: string, pass: string): string => `AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`;
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const codes = (replies: Reply[]): number[] => replies.map((r) => r.code);

/** A plaintext server with the AUTH fixture (alice / secret; boom: the hook throws) and a short failure delay. */
async function authServer(maxAuthFailures: number): Promise<TestServer> {
  return startTestServer({ receiverPath: AUTH, allowInsecureAuth: true, authFailureDelay: 20, maxAuthFailures });
}

describe('maxAuthFailures: 2', () => {
  let server: TestServer;
  const rejected: RejectedEvent[] = [];
  let off: () => void;
  before(async () => {
    off = on('rejected', (e) => rejected.push(e));
    server = await authServer(2);
  });
  after(async () => {
    off();
    await server.stop();
  });

  it('the second failure is answered 535, then 421 4.7.0, and the connection is closed; both are counted', async () => {
    const c = await RawClient.ready(server.port);
    const first = await c.command(plain('alice', 'wrong'));
    assert.match(first.text, /^535 5\.7\.8 /);
    // the second by LOGIN: both methods count; a NOOP pipelined behind the password is never answered
    assert.equal((await c.command('AUTH LOGIN')).code, 334);
    assert.equal((await c.command(b64('mallory'))).code, 334);
    c.write(`${b64('guess')}\r\nNOOP\r\n`);
    const last = await c.readUntilClosed();
    assert.deepEqual(codes(last), [535, 421], last.map((r) => r.text).join('\n'));
    assert.match(last[0]!.text, /^535 5\.7\.8 /);
    assert.equal(last[1]!.text, '421 4.7.0 Too many authentication failures, closing connection');
    assert.ok(await c.closedByServer(), 'the server closed the connection');
    const mine = rejected.filter((e) => e.stage === 'auth' && e.sessionId === rejected.at(-1)?.sessionId);
    assert.deepEqual(mine.map((e) => [e.reason, e.code]),
      [['bad-credentials', 535], ['bad-credentials', 535], ['too-many-auth-failures', 421]]);
  });

  it('the count is per connection, and a 454 (the hook threw) is no failure: a good AUTH after one failure works', async () => {
    const a = await RawClient.ready(server.port);
    const b = await RawClient.ready(server.port);
    assert.equal((await a.command(plain('alice', 'wrong'))).code, 535);
    assert.equal((await b.command(plain('alice', 'wrong'))).code, 535);
    assert.equal((await b.command(plain('boom', 'x'))).code, 454);
    assert.equal((await b.command(plain('boom', 'x'))).code, 454);
    const ok = await b.command(plain('alice', 'secret'));
    assert.equal(ok.code, 235, ok.text);
    const [, rcpt] = await b.envelope('a@example.org', ['someone@far.example']);
    assert.equal(rcpt!.code, 250, 'authenticated: the fixture lets it relay');
    assert.equal((await a.command('NOOP')).code, 250, 'one failure on another connection closed nothing');
    await a.quit();
    await b.quit();
  });
});

describe('maxAuthFailures: 0 (no limit)', () => {
  let server: TestServer;
  before(async () => { server = await authServer(0); });
  after(() => server.stop());

  it('five failures on one connection: five 535s, the connection stays open, then a good AUTH works', async () => {
    const c = await RawClient.ready(server.port);
    for (let i = 0; i < 5; i++) assert.equal((await c.command(plain('alice', `wrong${i}`))).code, 535);
    assert.equal((await c.command('NOOP')).code, 250);
    assert.equal((await c.command(plain('alice', 'secret'))).code, 235);
    await c.quit();
  });
});

describe('the option and the flag', () => {
  it('defaults to 3; takes a whole number, 0 or more, else an error naming it', () => {
    assert.equal(resolveOptions({}).maxAuthFailures, 3);
    assert.equal(resolveOptions({ maxAuthFailures: 0 }).maxAuthFailures, 0);
    for (const bad of [-1, 1.5, Number.NaN]) {
      assert.throws(() => resolveOptions({ maxAuthFailures: bad }), (e: unknown) => e instanceof OptionError && e.option === 'maxAuthFailures', String(bad));
    }
    const parsed = parseServeArgs(['--max-auth-failures', '5']);
    assert.equal(parsed !== 'help' && parsed.maxAuthFailures, 5);
    assert.throws(() => parseServeArgs(['--max-auth-failures', 'many']), /--max-auth-failures: expected a whole number/);
  });
});
