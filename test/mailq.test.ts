/**
 * Golden output of the mailq text format (Postfix's showq_compat.c: `"%-11s %7ld %20.20s %s"`,
 * `"%-17s %8ld %19.19s %s"` for long ids, the id followed by its status character `*`, `!` or
 * a space, `"%*s(%s)"` with padding 76 − strlen(reason)), through the formatters and through
 * showQueue. Every expected string is written out here, not produced by the code under test.
 */
process.env.TZ = 'UTC'; // before any Date use: asctime is local time

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Receiver, type Message } from '../src/index.ts';
import type { QueueRecord } from '../src/core/store.ts';
import { asctime, footer, heading, jsonEntry, layoutFor, mailqEntry } from '../src/main/mailq.ts';
import { showQueue, type ShowOptions } from '../src/main/showqueue.ts';
import { ownQueue } from './helpers/owned.ts';

const T1 = Date.UTC(2024, 2, 5, 9, 7, 3); // Tue Mar  5 09:07:03 2024
const T2 = Date.UTC(2024, 10, 26, 12, 22, 30); // Tue Nov 26 12:22:30 2024
const NOW = Date.UTC(2025, 0, 1);

interface Spec {
  id: string;
  to: string[];
  size: number;
  time?: number;
  from?: string;
  error?: string;
  state?: 'queued' | 'hold';
  leaseUntil?: number;
  delivered?: string[];
  attempts?: number;
}

function record(s: Spec): QueueRecord {
  return {
    v: 1,
    msg: {
      id: s.id, peerAddr: '127.0.0.1', peerHost: '', ident: '', helo: 'client.test', mimeType: '7BIT',
      from: s.from ?? 'alice@example.org', to: s.to, time: s.time ?? T1, textFile: `/q/spool/${s.id}.eml`, size: s.size,
      ...(s.error ? { error: s.error } : {}),
    },
    state: s.state ?? 'queued', storage: 'inline', attempts: s.attempts ?? 0, nextAttempt: (s.time ?? T1) + 300_000,
    ...(s.delivered ? { delivered: s.delivered } : {}),
    ...(s.leaseUntil ? { lease: { owner: 'runner-1', until: s.leaseUntil } } : {}),
  };
}

/** One message as the formatter prints it, the way showQueue calls it. */
function entry(s: Spec, long = s.id.length > 10): string {
  const r = record(s);
  return mailqEntry({ record: r, done: new Set(r.delivered ?? []), active: !!r.lease && r.lease.until > NOW }, layoutFor(long ? 17 : 10));
}

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }
}

let tmp: string;
before(async () => { tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-mailq-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

let queues = 0;
/** A fresh store holding `specs`, listed through showQueue into a string. */
async function listing(specs: Spec[], o: ShowOptions = {}): Promise<{ text: string; missing: string[] }> {
  const { store, close } = await ownQueue(join(tmp, `q${queues++}`));
  try {
    for (const s of specs) await store.enqueue(record(s), Buffer.alloc(s.size, 0x61));
    const out = new Collect();
    const missing = await showQueue(store, out, { now: NOW, ...o });
    return { text: out.text, missing };
  } finally {
    await close();
  }
}

const HEAD = '-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n';
const LONG_HEAD = '----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n';

describe('mailq text: pieces', () => {
  it('asctime is C asctime (day of month padded with a space) in the TZ', () => {
    assert.equal(asctime(T1), 'Tue Mar  5 09:07:03 2024');
    assert.equal(asctime(T2), 'Tue Nov 26 12:22:30 2024');
  });

  it('headings of the short- and long-id layouts', () => {
    assert.equal(heading(layoutFor(10)), HEAD);
    assert.equal(heading(layoutFor(17)), LONG_HEAD);
  });

  it('footer: empty queue, one request (singular), several, Kbytes rounded down', () => {
    assert.equal(footer(0, 0), 'Mail queue is empty\n');
    assert.equal(footer(1023, 1), '\n-- 0 Kbytes in 1 Request.\n');
    assert.equal(footer(2200, 2), '\n-- 2 Kbytes in 2 Requests.\n');
    assert.equal(footer(12_345_680, 3), '\n-- 12056 Kbytes in 3 Requests.\n');
  });
});

describe('mailq text: one message (short-id layout)', () => {
  it('several recipients, no reason line', () => {
    assert.equal(entry({ id: 'ABCDEF1234', to: ['bob@localhost', 'carol@localhost', 'dave@localhost'], size: 1500 }),
      'ABCDEF1234     1500 Tue Mar  5 09:07:03  alice@example.org\n'
      + '                                         bob@localhost\n'
      + '                                         carol@localhost\n'
      + '                                         dave@localhost\n');
  });

  it('an error: one (reason) line, right-aligned, before the first recipient that has it', () => {
    const reason = 'connect to mx.example.com: Connection refused';
    const text = entry({ id: 'ABCDEF1234', to: ['bob@localhost', 'carol@localhost'], size: 700, time: T2, error: reason });
    assert.equal(text,
      'ABCDEF1234      700 Tue Nov 26 12:22:30  alice@example.org\n'
      + '                               (connect to mx.example.com: Connection refused)\n'
      + '                                         bob@localhost\n'
      + '                                         carol@localhost\n');
    const line = text.split('\n')[1]!;
    assert.equal(line.length - line.trimStart().length, 76 - reason.length, 'padding is 76 - strlen(reason)');
    assert.equal(line.indexOf(')'), 77);
  });

  it('a delivered recipient gets (delivered); the reason line repeats whenever it changes', () => {
    assert.equal(entry({ id: 'ABCDEF1234', to: ['bob@localhost', 'carol@localhost', 'dave@localhost'], size: 700, time: T2,
      error: 'temporary failure', delivered: ['carol@localhost'] }),
    'ABCDEF1234      700 Tue Nov 26 12:22:30  alice@example.org\n'
      + '                                                           (temporary failure)\n'
      + '                                         bob@localhost\n'
      + '                                                                   (delivered)\n'
      + '                                         carol@localhost\n'
      + '                                                           (temporary failure)\n'
      + '                                         dave@localhost\n');
  });

  it('after a reason, a recipient without one gets (reason unavailable)', () => {
    assert.equal(entry({ id: 'ABCDEF1234', to: ['bob@localhost', 'carol@localhost'], size: 700, time: T2, delivered: ['bob@localhost'] }),
      'ABCDEF1234      700 Tue Nov 26 12:22:30  alice@example.org\n'
      + '                                                                   (delivered)\n'
      + '                                         bob@localhost\n'
      + '                                                          (reason unavailable)\n'
      + '                                         carol@localhost\n');
  });

  it('a reason longer than 76 characters gets no padding', () => {
    const long = 'x'.repeat(80);
    assert.equal(entry({ id: 'ABCDEF1234', to: ['bob@localhost'], size: 700, time: T2, from: 'a@b', error: long }),
      'ABCDEF1234      700 Tue Nov 26 12:22:30  a@b\n'
      + `(${long})\n`
      + '                                         bob@localhost\n');
  });

  it('held: ! after the id; the empty sender is MAILER-DAEMON', () => {
    assert.equal(entry({ id: 'ABCDEF1234', to: ['bob@localhost'], size: 700, time: T2, from: '', state: 'hold' }),
      'ABCDEF1234!     700 Tue Nov 26 12:22:30  MAILER-DAEMON\n'
      + '                                         bob@localhost\n');
  });

  it('leased: * after the id while the lease lasts, nothing once it expired', () => {
    assert.equal(entry({ id: 'ABCDEF1234', to: ['bob@localhost'], size: 700, time: T2, leaseUntil: NOW + 60_000 }),
      'ABCDEF1234*     700 Tue Nov 26 12:22:30  alice@example.org\n'
      + '                                         bob@localhost\n');
    assert.equal(entry({ id: 'ABCDEF1234', to: ['bob@localhost'], size: 700, time: T2, leaseUntil: NOW - 1 }),
      'ABCDEF1234      700 Tue Nov 26 12:22:30  alice@example.org\n'
      + '                                         bob@localhost\n');
  });
});

describe('mailq text: whole listings through showQueue', () => {
  it('an empty queue prints exactly "Mail queue is empty"; as JSON, nothing', async () => {
    assert.equal((await listing([])).text, 'Mail queue is empty\n');
    assert.equal((await listing([], { json: true })).text, '');
  });

  it('one message', async () => {
    assert.equal((await listing([{ id: 'ABCDEF1234', to: ['bob@localhost'], size: 512 }])).text,
      HEAD
      + 'ABCDEF1234      512 Tue Mar  5 09:07:03  alice@example.org\n'
      + '                                         bob@localhost\n'
      + '\n'
      + '-- 0 Kbytes in 1 Request.\n');
  });

  it('short ids: messages in id order, a blank line between, each state marked', async () => {
    const { text } = await listing([
      { id: 'ABCDEF1236', to: ['carol@localhost'], size: 2000, time: T2, state: 'hold', error: 'remote said no' },
      { id: 'ABCDEF1234', to: ['bob@localhost'], size: 1500, leaseUntil: NOW + 1 },
      { id: 'ABCDEF1235', to: ['dave@localhost', 'erin@localhost'], size: 700, from: '', leaseUntil: NOW - 1 },
    ]);
    assert.equal(text,
      HEAD
      + 'ABCDEF1234*    1500 Tue Mar  5 09:07:03  alice@example.org\n'
      + '                                         bob@localhost\n'
      + '\n'
      + 'ABCDEF1235      700 Tue Mar  5 09:07:03  MAILER-DAEMON\n'
      + '                                         dave@localhost\n'
      + '                                         erin@localhost\n'
      + '\n'
      + 'ABCDEF1236!    2000 Tue Nov 26 12:22:30  alice@example.org\n'
      + '                                                              (remote said no)\n'
      + '                                         carol@localhost\n'
      + '\n'
      + '-- 4 Kbytes in 3 Requests.\n');
  });

  it('long ids (ours, 17 characters): the long-id layout, every row with its status column', async () => {
    const { text } = await listing([
      { id: '0SA1B2C3D0000WXYZ', to: ['bob@localhost'], size: 1500 },
      { id: '0SA1B2C3E0000WXYZ', to: ['carol@localhost', 'dave@localhost'], size: 12_345_678, time: T2, from: '',
        state: 'hold', error: 'remote said no' },
      { id: '0SA1B2C3F0000WXYZ', to: ['e@localhost'], size: 2, time: T2, from: 'x@y', leaseUntil: NOW + 1 },
    ]);
    assert.equal(text,
      LONG_HEAD
      + '0SA1B2C3D0000WXYZ      1500 Tue Mar  5 09:07:03 alice@example.org\n'
      + '                                               bob@localhost\n'
      + '\n'
      + '0SA1B2C3E0000WXYZ! 12345678 Tue Nov 26 12:22:30 MAILER-DAEMON\n'
      + '                                                              (remote said no)\n'
      + '                                               carol@localhost\n'
      + '                                               dave@localhost\n'
      + '\n'
      + '0SA1B2C3F0000WXYZ*        2 Tue Nov 26 12:22:30 x@y\n'
      + '                                               e@localhost\n'
      + '\n'
      + '-- 12057 Kbytes in 3 Requests.\n');
  });

  it('given ids: only those, in the order given; unknown ids are returned', async () => {
    const { text, missing } = await listing([
      { id: 'ABCDEF1234', to: ['bob@localhost'], size: 100 },
      { id: 'ABCDEF1235', to: ['carol@localhost'], size: 200 },
      { id: 'ABCDEF1236', to: ['dave@localhost'], size: 300 },
    ], { ids: ['ABCDEF1236', 'NOSUCHID00', 'ABCDEF1234'] });
    assert.deepEqual(missing, ['NOSUCHID00']);
    assert.equal(text,
      HEAD
      + 'ABCDEF1236      300 Tue Mar  5 09:07:03  alice@example.org\n'
      + '                                         dave@localhost\n'
      + '\n'
      + 'ABCDEF1234      100 Tue Mar  5 09:07:03  alice@example.org\n'
      + '                                         bob@localhost\n'
      + '\n'
      + '-- 0 Kbytes in 2 Requests.\n');
  });

  it("the receiver's isDelivered marks recipients (delivered)", async () => {
    class SaysCarolIsDone extends Receiver {
      override async isDelivered(_m: Message, rcpt?: string): Promise<boolean> {
        return rcpt === 'carol@localhost';
      }
    }
    const { text } = await listing([{ id: 'ABCDEF1234', to: ['bob@localhost', 'carol@localhost'], size: 100, error: 'later' }],
      { receiver: new SaysCarolIsDone() });
    assert.equal(text,
      HEAD
      + 'ABCDEF1234      100 Tue Mar  5 09:07:03  alice@example.org\n'
      + '                                                                       (later)\n'
      + '                                         bob@localhost\n'
      + '                                                                   (delivered)\n'
      + '                                         carol@localhost\n'
      + '\n'
      + '-- 0 Kbytes in 1 Request.\n');
  });
});

describe('postqueue -j JSON line', () => {
  it('field names, values and order for a held message with a delivered recipient', () => {
    const r = record({ id: '0SA1B2C3E0000WXYZ', to: ['bob@localhost', 'carol@localhost'], size: 4, time: T2, from: '',
      state: 'hold', error: 'remote said no', delivered: ['carol@localhost'], attempts: 3 });
    assert.equal(jsonEntry({ record: r, done: new Set(['carol@localhost']), active: false }, Buffer.from('abc\n')),
      '{"queue_name":"hold","queue_id":"0SA1B2C3E0000WXYZ","arrival_time":1732623750,"message_size":4,'
      + '"forced_expire":false,"sender":"","recipients":[{"address":"bob@localhost","delay_reason":"remote said no"},'
      + '{"address":"carol@localhost","delay_reason":"delivered"}],"path":null,"attempts":3,"next_attempt":null,'
      + '"error":"remote said no","helo":"client.test","peer_addr":"127.0.0.1","body_b64":"YWJjCg=="}\n');
  });

  it('queue_name: active while leased, deferred after an attempt, incoming before', () => {
    const name = (s: Spec): string => (JSON.parse(jsonEntry({
      record: record(s), done: new Set(), active: !!s.leaseUntil && s.leaseUntil > NOW,
    })) as { queue_name: string }).queue_name;
    assert.equal(name({ id: 'ABCDEF1234', to: ['a@localhost'], size: 1, leaseUntil: NOW + 1 }), 'active');
    assert.equal(name({ id: 'ABCDEF1234', to: ['a@localhost'], size: 1, attempts: 1 }), 'deferred');
    assert.equal(name({ id: 'ABCDEF1234', to: ['a@localhost'], size: 1 }), 'incoming');
  });
});
