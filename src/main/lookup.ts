/**
 * Who is calling: reverse DNS and ident (RFC 1413), each bounded in time and
 * asynchronous, so a slow lookup delays only its own session's greeting.
 */
import { promises as dns } from 'node:dns';
import { connect, isIP } from 'node:net';

type ReverseCallback = (err: Error | null, hostnames?: string[]) => void;

function isLoopback(ip: string): boolean {
  return ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.');
}

/** A resolver in the shape smtp-server's `resolver` option takes; loopback is `localhost` without a query. */
export function reverseResolver(timeoutMs: number): { reverse(ip: string, cb: ReverseCallback): void } {
  const resolver = new dns.Resolver({ timeout: timeoutMs, tries: 1 });
  return {
    reverse(ip, cb) {
      if (isLoopback(ip)) return cb(null, ['localhost']);
      if (!isIP(ip)) return cb(null, []);
      const timer = setTimeout(() => cb(new Error(`reverse lookup of ${ip} timed out after ${timeoutMs} ms`)), timeoutMs);
      resolver.reverse(ip).then(
        (names) => { clearTimeout(timer); cb(null, names); },
        (err: Error) => { clearTimeout(timer); cb(err); },
      );
    },
  };
}

export interface IdentQuery {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  identPort: number;
  timeoutMs: number;
}

/**
 * Asks the client's identd who owns the connection. Resolves to the user id,
 * or '' on any error, refusal, malformed answer or time-out (never rejects).
 */
export function queryIdent(q: IdentQuery): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    let done = false;
    const finish = (user: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(user);
    };
    const socket = connect({ host: q.remoteAddress, port: q.identPort, localAddress: q.localAddress });
    const timer = setTimeout(() => finish(''), q.timeoutMs);
    socket.setEncoding('latin1');
    socket.on('connect', () => socket.write(`${q.remotePort} , ${q.localPort}\r\n`));
    socket.on('data', (chunk: string) => {
      answer += chunk;
      if (answer.length > 1000) return finish('');
      const eol = answer.indexOf('\n');
      if (eol >= 0) finish(parseIdent(answer.slice(0, eol), q.remotePort, q.localPort));
    });
    socket.on('end', () => finish(parseIdent(answer, q.remotePort, q.localPort)));
    socket.on('error', () => finish(''));
  });
}

/** `6191, 23 : USERID : UNIX : stjohns` → `stjohns`; anything else → ''. */
export function parseIdent(line: string, remotePort: number, localPort: number): string {
  const parts = line.replace(/\r?\n?$/, '').split(':');
  if (parts.length < 4 || parts[1]!.trim().toUpperCase() !== 'USERID') return '';
  // exactly two decimal port numbers (RFC 1413: 1*5digit); Number() alone would take '0x182F' or '23e0'
  const ports = parts[0]!.split(',').map((p) => (/^\s*\d{1,5}\s*$/.test(p) ? Number(p) : NaN));
  if (ports.length !== 2 || ports[0] !== remotePort || ports[1] !== localPort) return '';
  const user = parts.slice(3).join(':').trim();
  return /^[\x21-\x7e]{1,64}$/.test(user) ? user : '';
}
