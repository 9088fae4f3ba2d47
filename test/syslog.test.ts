/**
 * Syslog: the same lines as stderr reach a syslog listener the test starts, as
 * RFC 5424 messages — over UDP (`serve --syslog HOST:PORT`, the CLI) and to a
 * Unix datagram socket (what /dev/log is), for a receiver whose doSyslog() is true.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawn } from 'node:child_process';
import { startTestServer } from '../src/testing.ts';
import { spawnCli, type CliProcess } from './helpers/cli.ts';
import { sendTraffic, until } from './helpers/logs.ts';

const RECEIVER = new URL('./fixtures/logs-receiver.ts', import.meta.url).pathname;
const SYSLOG_RECEIVER = new URL('./fixtures/syslog-receiver.ts', import.meta.url).pathname;

interface Rfc5424 {
  pri: number;
  facility: number;
  severity: number;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  msg: string;
}

/** RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG` (no structured data here). */
function parse(datagram: string): Rfc5424 {
  const m = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) - ([\s\S]*?)\n?$/.exec(datagram);
  assert.ok(m, `an RFC 5424 message: ${JSON.stringify(datagram)}`);
  const pri = Number(m[1]);
  return {
    pri, facility: pri >> 3, severity: pri & 7, timestamp: m[2]!, hostname: m[3]!, appName: m[4]!, procId: m[5]!, msgId: m[6]!, msg: m[7]!,
  };
}

let dir: string;
let daemon: CliProcess | undefined;
before(async () => { dir = await mkdtemp(join(tmpdir(), 'smtp-receive-syslog-')); });
after(async () => {
  await daemon?.kill();
  await rm(dir, { recursive: true, force: true });
});

describe('syslog over UDP (serve --syslog HOST:PORT)', () => {
  let listener: Socket | undefined;
  after(() => listener?.close());

  it('every line also reaches the listener as RFC 5424: PRI (facility, severity), version 1, timestamp, hostname, app-name, pid, event as MSGID, the text', async () => {
    const received: string[] = [];
    listener = createSocket('udp4');
    listener.on('message', (m) => received.push(m.toString('utf8')));
    await new Promise<void>((ok) => listener!.bind(0, '127.0.0.1', ok));
    const port = listener.address().port;

    daemon = spawnCli(['serve', RECEIVER, '--listen', '127.0.0.1:0', '--queue', join(dir, 'udp'), '--no-reverse-dns', '--workers', '1',
      '--retry-min', '600000', '--max-lifetime', '0', '--log-format', 'json', '--syslog', `127.0.0.1:${port}`, '--syslog-facility', 'local3'],
    { SMTP_RECEIVE_LOG: '' });
    const smtp = await daemon.ready();
    const { ok, deferred } = await sendTraffic(smtp.port);
    const msgs = (): Rfc5424[] => received.map(parse);
    await until(() => msgs().some((m) => m.msgId === 'expired') && msgs().some((m) => m.msgId === 'delivered')
      && msgs().some((m) => m.msgId === 'aborted') && msgs().filter((m) => m.msgId === 'hook').length >= 3,
    'the lines at the syslog listener', 60_000, () => received.join(''));
    const exit = await daemon.signal('SIGTERM');
    assert.equal(exit.code, 0, daemon.stderr);

    const all = msgs();
    for (const m of all) {
      assert.equal(m.facility, 19, 'local3');
      assert.match(m.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(Math.abs(Date.parse(m.timestamp) - Date.now()) < 3600_000, m.timestamp);
      assert.equal(m.hostname, hostname());
      assert.equal(m.appName, 'smtp-receive');
      assert.equal(m.procId, String(daemon.pid));
    }
    const byEvent = (e: string): Rfc5424[] => all.filter((m) => m.msgId === e);
    const queued = byEvent('queued');
    assert.equal(queued.length, 2);
    assert.equal(queued[0]!.severity, 6, 'info');
    assert.match(queued.find((m) => m.msg.startsWith(ok))!.msg, new RegExp(`^${ok}: queued from=<a@example\\.org> size=\\d+ rcpts=1 peer=\\[127\\.0\\.0\\.1\\]`));
    assert.deepEqual(byEvent('rejected').map((m) => /stage=(\w+)/.exec(m.msg)?.[1]), ['rcpt', 'predeliver']);
    assert.match(byEvent('delivered')[0]!.msg, new RegExp(`^${ok}: delivered attempt=1 `));
    const expired = byEvent('expired')[0]!;
    assert.equal(expired.severity, 4, 'warning');
    assert.match(expired.msg, new RegExp(`^${deferred}: expired attempt=1 .*mailbox busy$`));
    assert.ok(byEvent('session').some((m) => / queued=2 rejected=2 /.test(m.msg)));
    assert.equal(byEvent('aborted')[0]!.severity, 6, 'a mid-DATA disconnect is info');
    assert.ok(byEvent('hook').some((m) => m.msg === `${ok}: deliver: trying ok@localhost`), 'message.log, from the worker');
    assert.ok(all.some((m) => m.msgId === '-' && m.msg === 'SIGTERM: stopping'), 'the plain log lines too');

    // the same lines as stderr: each stderr line's text is one syslog message
    const stderr = daemon.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string });
    assert.deepEqual(stderr.map((l) => l.msg).sort(), all.map((m) => m.msg).sort());
  });
});

describe('syslog to a Unix datagram socket (doSyslog(), /dev/log)', () => {
  it('a receiver whose doSyslog() is true logs to the socket too', async () => {
    const path = join(dir, 'log.sock');
    // a Unix datagram listener (Node has none): python3's socket module, one JSON string a datagram on stdout
    const listener = spawn('python3', ['-u', '-c', [
      'import json, socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      's.bind(sys.argv[1])',
      'print("ready", flush=True)',
      'while True: print(json.dumps(s.recv(65536).decode("utf8")), flush=True)',
    ].join('\n'), path], { stdio: ['ignore', 'pipe', 'inherit'] });
    const received: string[] = [];
    let ready = false;
    let rest = '';
    listener.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop()!;
      for (const line of lines) if (line === 'ready') ready = true; else received.push(JSON.parse(line) as string);
    });
    await until(() => ready, 'the Unix datagram listener', 30_000);
    const lines: string[] = [];
    const server = await startTestServer({
      receiverPath: SYSLOG_RECEIVER, syslog: path, logLevel: 'info', logStream: { write: (l: string) => lines.push(l) }, retryMin: 600_000,
    });
    try {
      const { ok } = await sendTraffic(server.port);
      await until(() => received.some((d) => d.includes(`${ok}: delivered`)) && received.some((d) => d.includes(' disconnected during DATA ')),
        'the lines at the socket', 60_000, () => received.join(''));
    } finally {
      await server.stop();
      listener.kill();
    }
    const msgs = received.map(parse);
    for (const m of msgs) {
      assert.equal(m.facility, 2, 'mail, the default');
      assert.equal(m.appName, 'smtp-receive');
      assert.equal(m.procId, String(process.pid));
    }
    // logger (util-linux) writes the header: MSGID is '-', the event is in the text
    for (const e of [': queued ', ': rejected ', ': delivered ', ': deferred ', 'disconnect from ', ' disconnected during DATA ', ': deliver: trying ']) {
      assert.ok(msgs.some((m) => m.msg.includes(e)), `a "${e}" line in ${JSON.stringify(received)}`);
    }
    // and stderr (here the logStream) has the same lines
    assert.equal(lines.length, msgs.length, lines.join(''));
  });

  it('doSyslog() without --syslog and no /dev/log: a warning that says to use --syslog HOST:PORT', { skip: existsSync('/dev/log') && '/dev/log exists here' }, async () => {
    const lines: string[] = [];
    const server = await startTestServer({ receiverPath: SYSLOG_RECEIVER, logStream: { write: (l: string) => lines.push(l) } });
    await server.stop();
    assert.ok(lines.some((l) => / warn doSyslog\(\) is true, but \/dev\/log does not exist .*--syslog HOST:PORT/.test(l)), lines.join(''));
  });

  it('--syslog naming a path that is not a socket: start-up fails naming it', async () => {
    await assert.rejects(startTestServer({ receiverPath: RECEIVER, syslog: join(dir, 'no-such.sock') }),
      /syslog: .*no-such\.sock is not a socket/);
  });
});
