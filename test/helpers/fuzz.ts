/**
 * Generators for the fuzz test: a seeded PRNG, random and mutated SMTP
 * command lines (never holding an LF, never starting with a dot, so the count
 * of commands on the wire is known), and random message bodies.
 */

/** A PRNG: floats in [0, 1). */
export type Rng = () => number;

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
const int = (rng: Rng, n: number): number => Math.floor(rng() * n);

function randomBytes(rng: Rng, n: number, alphabet?: string): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = alphabet ? alphabet.charCodeAt(int(rng, alphabet.length)) : int(rng, 256);
  return b;
}

const ADDRESSES = [
  'a@localhost', 'b@LOCALHOST', 'x@example.com', '', 'postmaster', '"quoted local"@localhost', '"a\\"b"@localhost',
  'jörg@localhost', 'élise@example.org', '@relay.test:a@localhost', 'a..b@localhost', 'a@[127.0.0.1]', 'a@[IPv6:::1]',
  'a@xn--bcher-kva.example', '"unterminated@localhost', 'a@b@localhost', 'a@-bad-.test', 'a\u200b@localhost',
];
const PARAMS = ['SIZE=100', 'SIZE=999999999', 'SIZE=', 'BODY=8BITMIME', 'BODY=7BIT', 'BODY=BINARYMIME', 'SMTPUTF8', 'SMTPUTF8=yes',
  'FOO=BAR', 'NOTIFY=NEVER', 'RET=HDRS', 'AUTH=<>', 'REQUIRETLS', 'ENVID=a+2Bb', 'SIZE=1 SIZE=2'];
const VERBS = ['EHLO client.test', 'HELO client.test', 'EHLO', 'RSET', 'NOOP', 'NOOP hello', 'VRFY a@localhost', 'EXPN list', 'HELP',
  'STARTTLS', 'AUTH PLAIN AGFAYg==', 'BDAT 10 LAST', 'ETRN localhost', 'XCLIENT ADDR=1.2.3.4', 'TURN', 'data', 'rcpt to:<c@localhost>',
  'GET / HTTP/1.1', 'MAIL FROM: <a@localhost>', 'MAIL FROM:a@localhost', 'RCPT TO:<a@localhost', 'Mail From:<a@localhost>'];

function addressCommand(rng: Rng, verb: 'MAIL FROM' | 'RCPT TO'): string {
  const params = Array.from({ length: int(rng, 3) }, () => pick(rng, PARAMS));
  const addr = rng() < 0.1 ? randomBytes(rng, int(rng, 20), 'abc@."<> \\x').toString('latin1') : pick(rng, ADDRESSES);
  return [`${verb}:<${addr}>`, ...params].join(' ');
}

/** A line safe to count: no LF, and no leading dot (a lone dot would end a DATA the count did not expect). */
function safeLine(b: Buffer): Buffer {
  for (let i = 0; i < b.length; i++) if (b[i] === 0x0a) b[i] = 0x20;
  if (b[0] === 0x2e) b[0] = 0x2c;
  return b;
}

function junk(rng: Rng): Buffer {
  const r = rng();
  if (r < 0.05) return randomBytes(rng, 4000 + int(rng, 1000), 'x'); // near and over the 4096-byte line limit
  if (r < 0.4) return randomBytes(rng, int(rng, 80));
  return randomBytes(rng, int(rng, 40), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ :<>@"=\r\0\xe4.');
}

const SENDERS = ['a@example.org', '', '"john smith"@example.org', 'postmaster@example.org'];
const LOCAL = ['a@localhost', 'B@LOCALHOST', '"quoted local"@localhost', 'postmaster', 'x@example.com'];

/** A transaction that may well be accepted: RSET, MAIL, RCPTs, DATA. */
function transaction(rng: Rng): string[] {
  const utf8 = rng() < 0.2;
  const to = Array.from({ length: 1 + int(rng, 3) }, () => (utf8 && rng() < 0.5 ? 'jörg@localhost' : pick(rng, LOCAL)));
  return ['RSET', `MAIL FROM:<${pick(rng, SENDERS)}>${utf8 ? ' SMTPUTF8' : ''}${rng() < 0.3 ? ' BODY=8BITMIME' : ''}`,
    ...to.map((a) => `RCPT TO:<${a}>`), 'DATA'];
}

/** One pipelined group (RFC 2920: DATA, when there, last); the first group of a session usually greets. */
export function randomGroup(rng: Rng, first: boolean): Buffer[] {
  const out: Buffer[] = [];
  if (first && rng() < 0.85) out.push(Buffer.from(rng() < 0.8 ? 'EHLO fuzz.test' : 'HELO fuzz.test'));
  if (rng() < 0.4) return [...out, ...transaction(rng).map((l) => Buffer.from(l, 'utf8'))];
  const n = 1 + int(rng, 5);
  for (let i = 0; i < n; i++) {
    const r = rng();
    if (r < 0.25) out.push(Buffer.from(addressCommand(rng, 'MAIL FROM'), 'utf8'));
    else if (r < 0.55) out.push(Buffer.from(addressCommand(rng, 'RCPT TO'), 'utf8'));
    else if (r < 0.75) out.push(Buffer.from(pick(rng, VERBS), 'utf8'));
    else out.push(junk(rng));
  }
  if (rng() < 0.5) out.push(Buffer.from('DATA'));
  return out.map(safeLine);
}

/** A line changed a little: bytes flipped, inserted, removed, cut, or its case changed. */
export function mutate(line: Buffer, rng: Rng): Buffer {
  let b = Buffer.from(line);
  const edits = 1 + int(rng, 3);
  for (let e = 0; e < edits; e++) {
    const at = int(rng, b.length + 1);
    const r = rng();
    if (r < 0.25 && b.length) b[Math.min(at, b.length - 1)] = int(rng, 256);
    else if (r < 0.5) b = Buffer.concat([b.subarray(0, at), Buffer.from([pick(rng, [0, 13, 32, 34, 60, 62, 64, 0xc3, 0xff, int(rng, 256)])]), b.subarray(at)]);
    else if (r < 0.65) b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(rng, 4))]);
    else if (r < 0.75) b = b.subarray(0, at);
    else if (r < 0.9) b = Buffer.from(rng() < 0.5 ? b.toString('latin1').toLowerCase() : b.toString('latin1').toUpperCase(), 'latin1');
    else b = Buffer.concat([b, b.subarray(0, at)]);
  }
  return safeLine(b);
}

/** A message body: text, dots, bare CR/LF, smuggling shapes, NULs, 8-bit bytes, long lines, now and then large. */
export function randomBody(rng: Rng): Buffer {
  const parts: Buffer[] = [Buffer.from('Subject: fuzz\r\n\r\n')];
  const n = int(rng, 30);
  for (let i = 0; i < n; i++) {
    const r = rng();
    if (r < 0.3) parts.push(Buffer.from(`line ${i}\r\n`));
    else if (r < 0.4) parts.push(Buffer.from(pick(rng, ['.\r\n', '..\r\n', '.x\r\n', '\n.\n', '\r.\r', '\n.\r\n', '\r.\r\n', '\r\n.\n', '\r\n\r\n'])));
    else if (r < 0.6) parts.push(randomBytes(rng, int(rng, 200)));
    else if (r < 0.65) parts.push(randomBytes(rng, 10_000 + int(rng, 20_000), 'abc'));
    else if (r < 0.67) parts.push(randomBytes(rng, 60_000 + int(rng, 300_000), 'defg\r\n'));
    else parts.push(Buffer.from(pick(rng, ['From: a@b\r\n', 'X: \0\r\n', 'é\r\n', '\r', '\n', 'RSET\r\nQUIT\r\n'])));
  }
  let body = Buffer.concat(parts);
  if (!body.subarray(-2).equals(Buffer.from('\r\n'))) body = Buffer.concat([body, Buffer.from('\r\n')]);
  return body;
}
