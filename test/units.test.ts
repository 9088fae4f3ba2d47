/** Unit tests of the small core pieces: replies, ids, line ends, trace headers, the spool directory. */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { rfc5322Date, traceHeaders, type TraceInfo } from '../src/core/headers.ts';
import { isId, newId } from '../src/core/id.ts';
import { Replies, SmtpReply, parseReply, toReply } from '../src/core/reply.ts';
import { DirSyncer, removeOrphans, spoolDir } from '../src/core/spool.ts';
import { LineEndNormaliser } from '../src/main/line-ends.ts';

describe('reply.ts', () => {
  it('parseReply: the seed string form, with the default enhanced code for the reply code', () => {
    const r = parseReply('550 relaying denied');
    assert.deepEqual([r.code, r.enhanced, r.text], [550, '5.7.1', 'relaying denied']);
    assert.equal(r.line, '5.7.1 relaying denied');
    assert.equal(r.temporary, false);
  });

  it('parseReply: an enhanced code in the string is kept', () => {
    const r = parseReply('450 4.2.1 busy');
    assert.deepEqual([r.code, r.enhanced, r.text, r.temporary], [450, '4.2.1', 'busy', true]);
    assert.equal(parseReply('250 ok').enhanced, '2.0.0');
    assert.equal(parseReply('553').text, 'Requested action not taken');
  });

  it('parseReply: control characters in the text never reach the reply (no extra reply lines)', () => {
    const r = parseReply('550 no\r\n250 ok\x00');
    assert.equal(r.text, 'no 250 ok');
  });

  it('parseReply: anything that is not a reply throws', () => {
    for (const bad of ['', 'garbage', 'relaying denied', '600 too high', '150 too low', '55 short', '5500 long', 'x550 y']) {
      assert.throws(() => parseReply(bad), TypeError, JSON.stringify(bad));
    }
    // a reply code and enhanced code of different classes is no reply either
    assert.throws(() => parseReply('550 4.7.1 mixed'), RangeError);
  });

  it('toReply: replies and reply strings pass through; anything else is the internal fallback', () => {
    const mine = new SmtpReply(554, '5.7.0', 'go away');
    assert.deepEqual(toReply(mine), { reply: mine, internal: false });
    const fromString = toReply('550 relaying denied');
    assert.equal(fromString.internal, false);
    assert.deepEqual(fromString.reply.toData(), { code: 550, enhanced: '5.7.1', text: 'relaying denied' });
    assert.deepEqual(toReply({ code: 452, enhanced: '4.3.1', text: 'full' }).reply.toData(), { code: 452, enhanced: '4.3.1', text: 'full' });
    for (const thrown of [new Error('boom'), undefined, null, 42, 'garbage', { code: 550 }, new TypeError('550 5.7.1 in an Error')]) {
      const v = toReply(thrown);
      assert.equal(v.internal, true, String(thrown));
      assert.equal(v.reply, Replies.localError, String(thrown));
    }
    assert.deepEqual(toReply(undefined, Replies.busy), { reply: Replies.busy, internal: true });
    assert.equal(Replies.localError.code, 451);
    assert.equal(Replies.localError.enhanced, '4.3.0');
  });

  it('SmtpReply: refuses mismatched enhanced codes, bad codes and CR/LF in the text', () => {
    assert.throws(() => new SmtpReply(550, '4.7.1', 'x'), RangeError);
    assert.throws(() => new SmtpReply(450, '2.0.0', 'x'), RangeError);
    assert.throws(() => new SmtpReply(550, '5.7', 'x'), RangeError);
    assert.throws(() => new SmtpReply(550, 'x.y.z', 'x'), RangeError);
    assert.throws(() => new SmtpReply(600, '5.0.0', 'x'), RangeError);
    assert.throws(() => new SmtpReply(550.5, '5.0.0', 'x'), RangeError);
    assert.throws(() => new SmtpReply(550, '5.7.1', 'a\r\n250 b'), RangeError);
    assert.throws(() => new SmtpReply(550, '5.7.1', 'a\nb'), RangeError);
    assert.throws(() => new SmtpReply(550, '5.7.1', 'a\rb'), RangeError);
    const ok = new SmtpReply(550, '5.7.1', 'fine');
    assert.ok(SmtpReply.is(ok) && ok instanceof Error);
    assert.ok(!SmtpReply.is({ code: 550, enhanced: '5.7.1', text: 'fine' }));
    assert.deepEqual(SmtpReply.fromData(ok.toData()).toData(), ok.toData());
  });
});

describe('id.ts', () => {
  it('1,000 ids: unique, sorted in creation order, 17 characters [0-9A-Z]', () => {
    const ids: string[] = [];
    for (let i = 0; i < 1000; i++) ids.push(newId());
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual([...ids].sort(), ids);
    for (const id of ids) {
      assert.match(id, /^[0-9A-Z]{17}$/);
      assert.ok(isId(id));
    }
  });

  it('ids stay unique and ordered within one millisecond and when the clock goes back', () => {
    const now = Date.now() + 1000;
    const ids = [newId(now), newId(now), newId(now), newId(now - 5000), newId(now - 5000)];
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual([...ids].sort(), ids);
  });

  it('isId refuses paths and anything newId cannot make', () => {
    for (const bad of ['../x', '../../etc/passwd', '', 'a'.repeat(17), '0MWXJ8GVB0000QT2', '0MWXJ8GVB0000QT2O0',
      '0MWXJ8GVB0000QT2O.eml', '0MWXJ8GVB0000QT/O', '0MWXJ8GVB0000QT2O\n']) {
      assert.equal(isId(bad), false, JSON.stringify(bad));
    }
  });
});

describe('line-ends.ts: LineEndNormaliser', () => {
  const run = (chunks: string[]): { out: string; fixed: number } => {
    const n = new LineEndNormaliser();
    const parts = chunks.map((c) => n.fix(Buffer.from(c, 'latin1')));
    const tail = n.end();
    if (tail) parts.push(tail);
    return { out: Buffer.concat(parts).toString('latin1'), fixed: n.fixed };
  };

  it('returns clean chunks as the same Buffer (no copy)', () => {
    const n = new LineEndNormaliser();
    for (const s of ['Subject: x\r\n\r\n', 'body line\r\n', 'no line end at all', '']) {
      const chunk = Buffer.from(s);
      assert.equal(n.fix(chunk), chunk, JSON.stringify(s));
    }
    assert.equal(n.fixed, 0);
  });

  it('fixes a bare LF and a bare CR', () => {
    assert.deepEqual(run(['a\nb\r\n']), { out: 'a\r\nb\r\n', fixed: 1 });
    assert.deepEqual(run(['a\rb\r\n']), { out: 'a\r\nb\r\n', fixed: 1 });
    assert.deepEqual(run(['\n\r\r\n\n']), { out: '\r\n\r\n\r\n\r\n', fixed: 3 });
  });

  it('a CR at the end of one chunk and the LF at the start of the next is a CRLF: unchanged, no copies', () => {
    const n = new LineEndNormaliser();
    const a = Buffer.from('line\r');
    const b = Buffer.from('\nnext\r\n');
    assert.equal(n.fix(a), a);
    assert.equal(n.fix(b), b);
    assert.equal(n.end(), undefined);
    assert.equal(n.fixed, 0);
  });

  it('a CR at the end of a chunk followed by something else gets its LF', () => {
    assert.deepEqual(run(['line\r', 'next\r\n']), { out: 'line\r\nnext\r\n', fixed: 1 });
    assert.deepEqual(run(['line\r', '\rnext']), { out: 'line\r\n\r\nnext', fixed: 2 });
  });

  it('a CR at the very end is fixed by end()', () => {
    const n = new LineEndNormaliser();
    n.fix(Buffer.from('last\r'));
    assert.deepEqual(n.end(), Buffer.from('\n'));
    assert.equal(n.fixed, 1);
    assert.equal(n.end(), undefined, 'only once');
  });

  it('any chunking of any mix of CR, LF and text gives the same result as normalising the whole', () => {
    const alphabet = ['a', '\r', '\n', '\r\n', '.', 'b'];
    let seed = 12345;
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    for (let round = 0; round < 500; round++) {
      let s = '';
      for (let i = rnd(40); i > 0; i--) s += alphabet[rnd(alphabet.length)];
      const chunks: string[] = [];
      for (let pos = 0; pos < s.length;) {
        const len = 1 + rnd(6);
        chunks.push(s.slice(pos, pos + len));
        pos += len;
      }
      const expected = s.replace(/\r\n|\r|\n/g, '\r\n');
      assert.equal(run(chunks).out, expected, JSON.stringify(chunks));
    }
  });
});

describe('headers.ts', () => {
  const base: TraceInfo = {
    id: '0MWXJ8GVB0000QT2O', helo: 'client.test', peerAddr: '192.0.2.1', peerHost: 'client.example', ident: '',
    hostname: 'mx.test', protocol: 'ESMTP', to: ['a@example.net'], envelope: false, time: new Date(Date.UTC(2026, 10, 26, 12, 22, 30)),
  };

  it('rfc5322Date: "Thu, 26 Nov 2026 12:22:30 +0000", in UTC, zero-padded times', () => {
    assert.equal(rfc5322Date(new Date(Date.UTC(2026, 10, 26, 12, 22, 30))), 'Thu, 26 Nov 2026 12:22:30 +0000');
    assert.equal(rfc5322Date(new Date(Date.UTC(2027, 0, 3, 4, 5, 6))), 'Sun, 3 Jan 2027 04:05:06 +0000');
    assert.match(rfc5322Date(new Date()), /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000$/);
  });

  it('traceHeaders: one Received header, folded, with the single recipient', () => {
    const h = traceHeaders({ ...base, ident: 'alice' }).toString('latin1');
    assert.equal(h, 'Received: from client.test (alice@client.example [192.0.2.1])\r\n'
      + '\tby mx.test (smtp-receive) with ESMTP id 0MWXJ8GVB0000QT2O\r\n'
      + '\tfor <a@example.net>; Thu, 26 Nov 2026 12:22:30 +0000\r\n');
  });

  it('traceHeaders: X-Envelope-To per recipient when envelope is on; a recipient with CR/LF is refused', () => {
    const h = traceHeaders({ ...base, to: ['a@example.net', 'b@example.net'], envelope: true }).toString('latin1');
    assert.match(h, /\r\nX-Envelope-To: <a@example\.net>\r\nX-Envelope-To: <b@example\.net>\r\n$/);
    assert.doesNotMatch(h, /\tfor </, 'no "for" clause with several recipients');
    for (const bad of ['a@example.net\r\nBcc: x@evil', 'a@b\nc', 'a@b\rc', 'a@b\x00']) {
      assert.throws(() => traceHeaders({ ...base, to: ['ok@example.net', bad], envelope: true }), /control character/, JSON.stringify(bad));
    }
    // without envelope headers such a recipient is left out of the "for" clause, never written raw
    const h2 = traceHeaders({ ...base, to: ['a@b\r\nX-Evil: 1'] }).toString('latin1');
    assert.doesNotMatch(h2, /X-Evil/);
  });

  it('traceHeaders: client-supplied text (HELO, ident, host) cannot break the header', () => {
    const h = traceHeaders({ ...base, helo: 'x\r\nX-Injected: 1', ident: 'a)b\r\n', peerHost: 'h (c)' }).toString('latin1');
    assert.equal(h.split('\r\n').length, 4, JSON.stringify(h));
    assert.doesNotMatch(h, /\r\nX-Injected/);
    assert.doesNotMatch(h, /\r(?!\n)|(?<!\r)\n/, 'only CRLF line ends');
  });
});

describe('spool.ts', () => {
  let dir: string;
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'smtp-receive-units-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('DirSyncer: concurrent sync() calls all resolve, sharing directory fsyncs', async () => {
    // count fsyncs of the directory handle (FileHandle.prototype.sync, restored afterwards)
    const probe = await open(dir, 'r');
    const proto = Object.getPrototypeOf(probe) as { sync(): Promise<void> };
    await probe.close();
    const original = proto.sync;
    let fsyncs = 0;
    proto.sync = function (this: unknown) { fsyncs++; return original.call(this); };
    const syncer = new DirSyncer(dir);
    try {
      const first = await Promise.all(Array.from({ length: 20 }, () => syncer.sync()));
      assert.equal(first.length, 20);
      assert.ok(fsyncs >= 1 && fsyncs <= 2, `20 concurrent calls cost ${fsyncs} fsyncs`);
      // a call made while an fsync runs waits for a later one (its entry may have been missed)
      const before = fsyncs;
      const a = syncer.sync();
      const b = syncer.sync();
      await Promise.all([a, b]);
      assert.equal(fsyncs - before, 2);
      // and later rounds still work
      await Promise.all([syncer.sync(), syncer.sync(), syncer.sync()]);
    } finally {
      proto.sync = original;
      await syncer.close();
    }
  });

  it('removeOrphans: removes spool files without a record and anything that is not a queue file', async () => {
    const queue = join(dir, 'queue');
    await mkdir(spoolDir(queue), { recursive: true });
    const kept = newId();
    const orphan = newId();
    for (const name of [`${kept}.eml`, `${orphan}.eml`, 'stray.tmp', `${kept}.eml.part`]) {
      await writeFile(join(spoolDir(queue), name), 'x');
    }
    const removed = await removeOrphans(queue, (id) => id === kept);
    assert.equal(removed, 3);
    assert.deepEqual(await readdir(spoolDir(queue)), [`${kept}.eml`]);
  });
});

describe('overrides (which hooks a receiver defines)', async () => {
  const { overrides } = await import('../src/core/load.ts');
  const { Receiver } = await import('../src/core/receiver.ts');

  it('sees hooks a subclass defines, and not the base class defaults', () => {
    class Mine extends Receiver {
      override async deliver(): Promise<void> {}
    }
    class Deeper extends Mine {}
    assert.equal(overrides(new Deeper(), 'deliver'), true);
    assert.equal(overrides(new Deeper(), 'isDelivered'), false);
    assert.equal(overrides(new Receiver(), 'deliver'), false);
  });

  it('works when the receiver extends another copy of the base class (src/ vs dist/)', () => {
    // what a second copy of receiver.ts looks like: the same symbols, different class objects
    class OtherCopyBase {
      async deliver(): Promise<void> { throw new Error('default'); }
      async isDelivered(): Promise<boolean> { return false; }
    }
    Object.defineProperty(OtherCopyBase, Symbol.for('smtp-receive.Receiver'), { value: true });
    Object.defineProperty(OtherCopyBase, Symbol.for('smtp-receive.Receiver.base'), { value: true });
    class Theirs extends OtherCopyBase {
      override async deliver(): Promise<void> {}
    }
    const r = new Theirs() as unknown as InstanceType<typeof Receiver>;
    assert.equal(Receiver.isReceiverClass(Theirs), true);
    assert.equal(overrides(r, 'deliver'), true);
    assert.equal(overrides(r, 'isDelivered'), false, 'the other copy\'s default is not an override');
  });
});
