/**
 * The `smtp-receive` CLI, run as a real process (`node --import tsx src/main/cli.ts`),
 * plus unit tests of its argument parsing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { parseListen, parseServeArgs } from '../src/main/cli.ts';
import { runCli, spawnCli } from './helpers/cli.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

const KEEP = new URL('./fixtures/keep-queued.ts', import.meta.url).pathname;

let tmp: string;
before(async () => { tmp = await mkdtemp(join(tmpdir(), 'smtp-receive-cli-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

/** Flags that parseServeArgs accepts: a flag added there without a line in --help fails the test below. */
async function acceptedFlags(): Promise<Array<{ flag: string; type: 'string' | 'boolean' }>> {
  const { SERVE_FLAGS } = await import('../src/main/cli.ts');
  return Object.entries(SERVE_FLAGS).map(([flag, o]) => ({ flag, type: o.type }));
}

/** A value each string flag accepts. */
const SAMPLE: Record<string, string> = {
  listen: '127.0.0.1:2525', receiver: './r.js', queue: './q', domain: 'example.net', hostname: 'mx.example.net',
  auth: 'off', 'dns-servers': '127.0.0.1:53,[::1]:53', 'webhook-secret-file': fileURLToPath(import.meta.url),
};

/** Args that keep a wrongly started daemon harmless: any free port, a temporary queue. */
const safe = (): string[] => ['--listen', '127.0.0.1:0', '--queue', join(tmp, 'q'), '--no-reverse-dns', '--workers', '1'];

describe('smtp-receive serve --help', () => {
  it('exits 0 and documents every flag that parseServeArgs accepts', async () => {
    const flags = await acceptedFlags();
    const names = flags.map((f) => f.flag);
    for (const known of ['receiver', 'listen', 'queue', 'domain', 'hostname', 'greet-pause', 'no-reverse-dns',
      'dns-timeout', 'ident', 'ident-timeout', 'inline-max', 'hook-timeout', 'predeliver-timeout', 'workers',
      'worker-queue', 'max-clients', 'help']) {
      assert.ok(names.includes(known), `parseServeArgs accepts --${known}`);
    }
    const r = await runCli(['serve', '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: smtp-receive serve/);
    for (const { flag, type } of flags) {
      assert.match(r.stdout, new RegExp(`^\\s+(-\\w, )?--${flag}\\b${type === 'string' ? ' [A-Z]' : ''}`, 'm'), `--help documents --${flag}`);
      // and the table read from the source is really what parseServeArgs takes
      const args = type === 'string' ? [`--${flag}`, SAMPLE[flag] ?? '5'] : [`--${flag}`];
      assert.doesNotThrow(() => parseServeArgs(args), `parseServeArgs accepts ${args.join(' ')}`);
    }
    assert.match(r.stdout, /^\s+SMTP_RECEIVE_LOG\s+log level/m, '--help documents the environment variable');
    // nothing documented that it does not take
    for (const [, flag] of r.stdout.matchAll(/^\s+(?:-\w, )?--([a-z0-9-]+)/gm)) assert.ok(names.includes(flag!), `--${flag} in --help is accepted`);
  });

  it('-h is the same help', async () => {
    const r = await runCli(['serve', '-h']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--greet-pause MS/);
  });
});

describe('smtp-receive: bad arguments exit 2 and name the flag', () => {
  const cases: Array<[string[], RegExp]> = [
    [['serve', '--bogus'], /--bogus/],
    [['serve', '--listen', 'nope'], /--listen\b.*nope/],
    [['serve', '--listen', '127.0.0.1:65536'], /--listen\b/],
    [['serve', '--greet-pause', 'abc'], /--greet-pause\b.*abc/],
    [['serve', '--domain', 'bad domain'], /--domain\b.*bad domain/],
    [['serve', '--hostname', 'bad host'], /--hostname\b/],
    [['serve', '--dns-timeout', '5000'], /--dns-timeout\b/],
    [['serve', '--inline-max', '999999999999'], /--inline-max\b/],
    [['serve', '--workers', '0'], /--workers\b/],
    [['serve', 'a.js', '--receiver', 'b.js'], /either as an argument or with --receiver/],
    [['frobnicate'], /unknown command "frobnicate"/],
  ];
  it('each case exits 2 with a message naming the flag, and never starts listening', async () => {
    // all at once (each is a short-lived process); a failure names its case
    const results = await Promise.all(cases.map(async ([args]) => {
      // the safe flags first: a bad value given after them is the one parsed
      const full = args[0] === 'serve' ? ['serve', ...safe(), ...args.slice(1)] : args;
      return { args, r: await runCli(full) };
    }));
    for (const [i, { args, r }] of results.entries()) {
      const what = `${args.join(' ')} → code ${r.code}, stderr ${JSON.stringify(r.stderr)}`;
      assert.equal(r.code, 2, what);
      assert.match(r.stderr, /^smtp-receive: /, what);
      assert.match(r.stderr, cases[i]![1], what);
      assert.doesNotMatch(r.stdout, /listening on/, what);
    }
  });

  it('no command: usage on stdout and exit 2', async () => {
    const r = await runCli([]);
    assert.equal(r.code, 2);
    assert.match(r.stdout, /^Usage: smtp-receive serve/);
  });
});

describe('smtp-receive serve: receiver modules', () => {
  it('a module that does not default-export a Receiver subclass: an error naming the file', async () => {
    const file = join(tmp, 'not-a-receiver.mjs');
    await writeFile(file, 'export default class NotAReceiver { async deliver() {} }\n');
    const r = await runCli(['serve', file, ...safe()]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not-a-receiver\.mjs/);
    assert.match(r.stderr, /default-export a subclass of Receiver/);
    assert.doesNotMatch(r.stdout, /listening on/);
  });

  it('a module that does not exist: an error naming the file', async () => {
    const r = await runCli(['serve', '--receiver', join(tmp, 'missing-receiver.mjs'), ...safe()]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /missing-receiver\.mjs/);
  });
});

describe('smtp-receive serve --domain example.net --domain example.org', () => {
  it('accepts RCPT for both domains, refuses others with 550, queues a message, stops on SIGTERM', async () => {
    const queue = join(tmp, 'domains');
    // a receiver without deliver(): the message stays queued (serve's default would deliver it into ./mail)
    const p = spawnCli(['serve', '--listen', '127.0.0.1:0', '--queue', queue, '--no-reverse-dns', '--workers', '1',
      '--receiver', KEEP, '--domain', 'example.net', '--domain', 'example.org']);
    try {
      const { port } = await p.ready();
      const c = await RawClient.ready(port);
      try {
        assert.equal((await c.command('MAIL FROM:<someone@example.com>')).code, 250);
        for (const [rcpt, code] of [['a@example.net', 250], ['b@EXAMPLE.ORG', 250], ['c@localhost', 550],
          ['d@example.com', 550], ['e@sub.example.net', 550]] as const) {
          const r = await c.command(`RCPT TO:<${rcpt}>`);
          assert.equal(r.code, code, `${rcpt}: ${r.text}`);
          if (code === 550) assert.match(r.text, /^550 5\.7\.1 /);
        }
        queuedId(await c.data('Subject: two domains\r\n\r\nhello\r\n'));
      } finally {
        await c.quit();
      }
      assert.deepEqual(await p.signal('SIGTERM'), { code: 0, signal: null });
    } finally {
      await p.kill();
    }
  });
});

describe('parseServeArgs', () => {
  it('maps flags to options', () => {
    const o = parseServeArgs(['./r.js', '--listen', '[::1]:2525', '--domain', 'a.example', '--domain', 'b.example',
      '--no-reverse-dns', '--ident', '--ident-timeout', '300', '--greet-pause', '250', '--inline-max', '65536',
      '--queue', '/var/q', '--hostname', 'mx.test', '--workers', '3', '--max-clients', '10']);
    assert.notEqual(o, 'help');
    // only the options given here (other flags may be added; those stay undefined, see below)
    const expected = {
      receiverPath: './r.js', host: '::1', port: 2525, queueDir: '/var/q', domains: ['a.example', 'b.example'],
      hostname: 'mx.test', greetPause: 250, reverseDns: false, dnsTimeout: undefined, ident: true, identTimeout: 300,
      inlineMax: 65536, hookTimeout: undefined, predeliverTimeout: undefined, workers: 3, workerQueue: undefined,
      maxClients: 10,
    };
    const given = Object.fromEntries(Object.keys(expected).map((k) => [k, (o as Record<string, unknown>)[k]]));
    assert.deepEqual(given, expected);
    for (const [k, v] of Object.entries(o)) if (!(k in expected)) assert.equal(v, undefined, k);
  });

  it('leaves what is not given to the defaults (undefined)', () => {
    const o = parseServeArgs([]);
    assert.notEqual(o, 'help');
    if (o === 'help') return;
    for (const [k, v] of Object.entries(o)) assert.equal(v, undefined, k);
  });

  it('--receiver is the same as the argument; both, or two, are refused', () => {
    assert.equal((parseServeArgs(['--receiver', 'x.js']) as { receiverPath?: string }).receiverPath, 'x.js');
    assert.throws(() => parseServeArgs(['a.js', '--receiver', 'b.js']), /not both/);
    assert.throws(() => parseServeArgs(['a.js', 'b.js']), /one receiver module/);
  });

  it('--help / -h → "help"', () => {
    assert.equal(parseServeArgs(['--help']), 'help');
    assert.equal(parseServeArgs(['-h']), 'help');
  });

  it('refuses unknown flags, missing values and non-numbers, naming the flag', () => {
    assert.throws(() => parseServeArgs(['--bogus']), /--bogus/);
    assert.throws(() => parseServeArgs(['--workers']), /--workers/);
    for (const flag of ['greet-pause', 'dns-timeout', 'ident-timeout', 'inline-max', 'hook-timeout',
      'predeliver-timeout', 'workers', 'worker-queue', 'max-clients', 'max-deliveries']) {
      for (const bad of ['abc', '1.5', '-1', '']) {
        assert.throws(() => parseServeArgs([`--${flag}=${bad}`]), new RegExp(`--${flag}`), `--${flag}=${bad}`);
      }
    }
  });
});

describe('parseListen', () => {
  it('takes HOST:PORT and [IPv6]:PORT', () => {
    assert.deepEqual(parseListen('[::1]:2525'), { host: '::1', port: 2525 });
    assert.deepEqual(parseListen('127.0.0.1:25'), { host: '127.0.0.1', port: 25 });
    assert.deepEqual(parseListen('localhost:0'), { host: 'localhost', port: 0 });
    assert.deepEqual(parseListen('[2001:db8::1]:65535'), { host: '2001:db8::1', port: 65535 });
    assert.deepEqual(parseListen('[::ffff:127.0.0.1]:2525'), { host: '::ffff:127.0.0.1', port: 2525 });
  });

  it('takes a bare PORT (127.0.0.1) and :PORT (every IPv4 address)', () => {
    assert.deepEqual(parseListen('2525'), { host: '127.0.0.1', port: 2525 });
    assert.deepEqual(parseListen(':25'), { host: '0.0.0.0', port: 25 });
  });

  it('refuses anything else, naming --listen', () => {
    for (const bad of ['nope', '127.0.0.1', '65536', ':', '127.0.0.1:', '127.0.0.1:65536', '127.0.0.1:123456', '::1:25',
      '[::1]', '[::1]:', 'host:port', ' 127.0.0.1:25', '127.0.0.1:25 ', 'a b:25', '']) {
      assert.throws(() => parseListen(bad), /--listen/, JSON.stringify(bad));
    }
  });
});
