/** Options of `serve`: one typed object, checked once at start-up with errors that name the option. */
import { isIP } from 'node:net';
import { hostname as osHostname } from 'node:os';
import type { BuiltinReceiver } from '../receivers/index.ts';
import { CommandUsageError } from './command.ts';

export interface ServeOptions {
  /** Receiver module (default-exports a Receiver subclass). Without one, `builtin` runs. */
  receiverPath?: string;
  /**
   * A built-in receiver (and its options) when there is no receiverPath:
   * Maildir, webhook, SMTP relay, or 'none' (deliver nothing: messages stay queued).
   * @default { kind: 'maildir' } (mail into ./mail)
   */
  builtin?: BuiltinReceiver;
  /** Address to listen on. @default '127.0.0.1' */
  host?: string;
  /** Port to listen on (0: any free port). @default 2525 */
  port?: number;
  /** Queue directory; overrides the receiver's queueDirectory(). */
  queueDir?: string;
  /** Local domains the default checkRcptTo accepts. @default ['localhost'] */
  domains?: string[];
  /** Name in the greeting and Received headers. @default os.hostname() */
  hostname?: string;
  /** Pause before the 220 greeting, in ms; an early talker during it is refused. 0: no pause. @default 0 */
  greetPause?: number;
  /** Look up the client's name (PTR), bounded by dnsTimeout. @default true */
  reverseDns?: boolean;
  /** Time limit of a reverse lookup in ms (at most 1500, smtp-server's own cap). @default 1000 */
  dnsTimeout?: number;
  /** Ask the client's identd (RFC 1413) for the user name. @default false */
  ident?: boolean;
  /** Time limit of an ident query in ms. @default 1000 */
  identTimeout?: number;
  /** Port of the client's identd (RFC 1413 says 113; tests use another). @default 113 */
  identPort?: number;
  /** Largest stored message kept inside LMDB instead of a spool file, in bytes. @default 131072 */
  inlineMax?: number;
  /** Time limit of main-thread hooks (checkAccess, checkMailFrom, checkRcptTo), ms. @default 10000 */
  hookTimeout?: number;
  /** Time limit of predeliver, ms; a late worker is terminated. @default 30000 */
  predeliverTimeout?: number;
  /** Worker threads. @default os.availableParallelism() */
  workers?: number;
  /** Tasks that may wait for a worker; beyond it DATA gets 451 4.3.2. @default 256 */
  workerQueue?: number;
  /** Most concurrent connections; more get 421. @default 1000 */
  maxClients?: number;
  /** Idle time before a session is dropped, ms. @default 60000 */
  socketTimeout?: number;
  /** Run the queue runner in this process (needs a receiver with deliver()). @default true */
  runner?: boolean;
  /** First delivery attempt right after the 250 (else at the runner's next look). @default true */
  immediate?: boolean;
  /** First retry delay, ms. @default 300000 */
  retryMin?: number;
  /** Longest retry delay, ms. @default 4000000 */
  retryMax?: number;
  /** Queue lifetime before a message goes on hold, ms. @default 432000000 (5 days) */
  maxLifetime?: number;
  /** Time limit of one deliver, ms. @default 300000 */
  deliverTimeout?: number;
  /** How often the runner looks for messages made due by other processes, ms. @default 5000 */
  pollInterval?: number;
  /** On stop, how long deliveries in flight may finish before their leases are released, ms. @default 10000 */
  shutdownGrace?: number;
  /** When a queue command holds the queue (no daemon was running), how long to wait for it, ms. @default 10000 */
  lockWait?: number;
  /** Control socket (`<queue>/control.sock`, mode 0600): also open to this group (name or gid), mode 0660. */
  controlGroup?: string;
  /** SPF, DKIM, DMARC and ARC verdicts for each message (`message.auth`, an Authentication-Results header). @default true */
  auth?: boolean;
  /** Refuse with 550 5.7.1 a message that fails DMARC where the domain's policy is reject. @default false */
  dmarcReject?: boolean;
  /** DNS servers for authentication, `IP` or `IP:PORT` (`[IPv6]:PORT`). @default the system's */
  dnsServers?: string[];
  /** Time limit of one authentication DNS look-up, ms. @default 2000 */
  authDnsTimeout?: number;
  /** Time limit of all the authentication DNS look-ups of one message, ms (later ones give temperror). @default 5000 */
  authTimeout?: number;
}

export type ResolvedOptions = Required<Omit<ServeOptions, 'receiverPath' | 'builtin' | 'queueDir' | 'workers' | 'controlGroup'>>
  & Pick<ServeOptions, 'receiverPath' | 'builtin' | 'queueDir' | 'workers' | 'controlGroup'>;

export class OptionError extends Error {
  constructor(readonly option: string, message: string) {
    super(`option ${option}: ${message}`);
    this.name = 'OptionError';
  }
}

function int(name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new OptionError(name, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

const DOMAIN = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

export function resolveOptions(o: ServeOptions): ResolvedOptions {
  const domains = (o.domains ?? ['localhost']).map((d) => d.toLowerCase().replace(/\.$/, ''));
  for (const d of domains) if (!DOMAIN.test(d)) throw new OptionError('domains', `${JSON.stringify(d)} is not a domain name`);
  if (domains.length === 0) throw new OptionError('domains', 'at least one local domain is needed');
  const hostname = o.hostname ?? osHostname();
  if (!/^[A-Za-z0-9.-]{1,253}$/.test(hostname)) throw new OptionError('hostname', `${JSON.stringify(hostname)} is not a host name`);
  if (o.receiverPath && o.builtin) throw new OptionError('builtin', 'give a receiver module (receiverPath) or a built-in receiver, not both');
  const dnsServers = (o.dnsServers ?? []).map(checkDnsServer);
  return {
    receiverPath: o.receiverPath,
    builtin: o.receiverPath ? undefined : o.builtin ?? { kind: 'maildir' },
    queueDir: o.queueDir,
    host: o.host ?? '127.0.0.1',
    port: int('port', o.port ?? 2525, 0, 65535),
    domains,
    hostname,
    greetPause: int('greetPause', o.greetPause ?? 0, 0, 300_000),
    reverseDns: o.reverseDns ?? true,
    dnsTimeout: int('dnsTimeout', o.dnsTimeout ?? 1000, 1, 1500),
    ident: o.ident ?? false,
    identTimeout: int('identTimeout', o.identTimeout ?? 1000, 1, 60_000),
    identPort: int('identPort', o.identPort ?? 113, 1, 65535),
    inlineMax: int('inlineMax', o.inlineMax ?? 128 * 1024, 0, 64 * 1024 * 1024),
    hookTimeout: int('hookTimeout', o.hookTimeout ?? 10_000, 1),
    predeliverTimeout: int('predeliverTimeout', o.predeliverTimeout ?? 30_000, 1),
    workers: o.workers === undefined ? undefined : int('workers', o.workers, 1, 256),
    workerQueue: int('workerQueue', o.workerQueue ?? 256, 0),
    maxClients: int('maxClients', o.maxClients ?? 1000, 1),
    socketTimeout: int('socketTimeout', o.socketTimeout ?? 60_000, 1000),
    runner: o.runner ?? true,
    immediate: o.immediate ?? true,
    retryMin: int('retryMin', o.retryMin ?? 300_000, 0),
    retryMax: int('retryMax', o.retryMax ?? 4_000_000, 0),
    maxLifetime: int('maxLifetime', o.maxLifetime ?? 5 * 24 * 3600_000, 0),
    deliverTimeout: int('deliverTimeout', o.deliverTimeout ?? 300_000, 1),
    pollInterval: int('pollInterval', o.pollInterval ?? 5000, 10),
    shutdownGrace: int('shutdownGrace', o.shutdownGrace ?? 10_000, 0),
    lockWait: int('lockWait', o.lockWait ?? 10_000, 0),
    controlGroup: o.controlGroup,
    auth: o.auth ?? true,
    dmarcReject: o.dmarcReject ?? false,
    dnsServers,
    authDnsTimeout: int('authDnsTimeout', o.authDnsTimeout ?? 2000, 1, 60_000),
    authTimeout: int('authTimeout', o.authTimeout ?? 5000, 1, 300_000),
  };
}

/** A DNS server: `IP`, `IP:PORT` or `[IPv6]:PORT` (node:dns's form). */
function checkDnsServer(v: string): string {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+))(?::(\d{1,5}))?$|^([0-9a-fA-F:]*:[0-9a-fA-F:.]*)$/.exec(v);
  const ip = m?.[1] ?? m?.[2] ?? m?.[4];
  const port = m?.[3] === undefined ? 53 : Number(m[3]);
  if (!ip || !isIP(ip) || port < 1 || port > 65535) {
    throw new OptionError('dnsServers', `expected IP or IP:PORT (e.g. 127.0.0.1:53, [::1]:53 or ::1), got ${JSON.stringify(v)}`);
  }
  return v;
}

/** The flags of `serve` that choose and configure a built-in receiver. */
export interface BuiltinFlags {
  maildir?: string;
  webhook?: string;
  'webhook-secret'?: string;
  'webhook-timeout'?: number;
  relay?: string;
  'relay-timeout'?: number;
}

/**
 * The built-in receiver the flags ask for (undefined: none asked for). They
 * choose one receiver, so they do not go with a receiver module, nor with one
 * another; a flag that configures one (--webhook-secret) chooses it too, and
 * the receiver's own check then asks for what is missing (--webhook: missing).
 */
export function builtinFromFlags(f: BuiltinFlags, receiverModule: string | undefined): BuiltinReceiver | undefined {
  const given = (Object.keys(f) as Array<keyof BuiltinFlags>).filter((k) => f[k] !== undefined).map((k) => `--${k}`);
  if (given.length === 0) return undefined;
  if (receiverModule) {
    throw new CommandUsageError(`${given.join(', ')}: built-in receiver flags do not go with a receiver module (${receiverModule}); configure the module instead`);
  }
  const kinds = [
    f.maildir !== undefined && '--maildir',
    (f.webhook ?? f['webhook-secret'] ?? f['webhook-timeout']) !== undefined && '--webhook',
    (f.relay ?? f['relay-timeout']) !== undefined && '--relay',
  ].filter((k): k is string => !!k);
  if (kinds.length > 1) throw new CommandUsageError(`${given.join(', ')}: choose one built-in receiver (${kinds.join(' or ')}), not several`);
  if (kinds[0] === '--maildir') return { kind: 'maildir', options: { root: f.maildir } };
  if (kinds[0] === '--webhook') {
    return { kind: 'webhook', options: { url: f.webhook!, secret: f['webhook-secret'], timeout: f['webhook-timeout'] } };
  }
  const target = f.relay === undefined ? undefined : parseRelayTarget(f.relay);
  return { kind: 'relay', options: { host: target?.host!, port: target?.port, timeout: f['relay-timeout'] } };
}

/** `--relay HOST`, `HOST:PORT` or `[IPv6]:PORT`. */
export function parseRelayTarget(v: string): { host: string; port?: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+))(?::(\d{1,5}))?$/.exec(v);
  if (!m || (m[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535))) {
    throw new CommandUsageError(`--relay: expected HOST or HOST:PORT (e.g. smtp.example.net:587 or [::1]:2525), got ${JSON.stringify(v)}`);
  }
  return { host: m[1] ?? m[2]!, port: m[3] === undefined ? undefined : Number(m[3]) };
}
