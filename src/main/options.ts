/** Options of `serve`: one typed object, checked once at start-up with errors that name the option. */
import { isIP } from 'node:net';
import { hostname as osHostname } from 'node:os';
import type { BuiltinReceiver } from '../receivers/index.ts';
import { envLogLevel, isLogLevel, type LogLevel } from '../core/log.ts';
import { resolveTls, type ResolvedTls, type TlsServeOptions } from './tls-options.ts';
import { DEFAULT_METRICS_ADDRESS, parseMetricsAddress, type MetricsAddress } from './metrics/address.ts';
import { checkProxyFrom } from './proxy-from.ts';
import { IPV6_PREFIX_DEFAULT } from './client-key.ts';
import { FACILITIES, parseSyslogTarget } from './log/syslog-target.ts';

/** (TLS and AUTH: see TlsServeOptions, ./tls-options.ts.) */
export interface ServeOptions extends TlsServeOptions {
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
  /** Sessions at once from one client (an IPv4 address, an IPv6 prefix: ipv6PrefixLength); one more gets 421 4.7.0. 0: no limit. @default 50 */
  maxClientsPerIp?: number;
  /**
   * maxClientsPerIp counts an IPv6 client by its first this many bits, as one host usually holds a
   * whole /64; 128: per address. (IPv4, and IPv4-mapped IPv6, count per address.) @default 64
   */
  ipv6PrefixLength?: number;
  /** Commands in one session; one more gets 421 4.7.0. 0: no limit. @default 10000 */
  maxCommands?: number;
  /** Bad commands (answered 500–504 or 555) in one session; the last of them gets 421 4.7.0 instead. 0: no limit. @default 10 */
  maxBadCommands?: number;
  /** Time from the 354 to the client's final dot, ms, however the data trickles in; then 421 4.4.2. 0: no limit. @default 600000 */
  dataTimeout?: number;
  /** Longest command line in bytes (without its CRLF); a longer one gets 421 4.7.0. @default 4096 */
  maxLineLength?: number;
  /** Recipients per message (beyond it 452 4.5.3); overrides the receiver's maxRecipients(). */
  maxRecipients?: number;
  /** Message size in bytes (beyond it 552 5.3.4); overrides the receiver's maxDataLength(). */
  maxSize?: number;
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
  /** Delivery attempts in flight at once (a webhook or relay sees this many requests at most). @default 32 × workers */
  maxDeliveries?: number;
  /** How often the runner looks for messages made due by other processes, ms. @default 5000 */
  pollInterval?: number;
  /** On stop, how long deliveries in flight may finish before their leases are released, ms. @default 10000 */
  shutdownGrace?: number;
  /** When a queue command holds the queue (no daemon was running), how long to wait for it, ms. @default 10000 */
  lockWait?: number;
  /** Control socket (`<queue>/control.sock`, mode 0600): also open to this group (name or gid), mode 0660. */
  controlGroup?: string;
  /**
   * Address of the HTTP listener serving /metrics, /healthz and /readyz (`HOST:PORT`, port 0: any
   * free port), or false (or 'off') for none. @default '127.0.0.1:9525'
   */
  metrics?: string | false;
  /**
   * Load balancers that send a PROXY protocol header (v1 or v2), as addresses or CIDR ranges
   * (docs/scale-out.md). A connection from one must start with the header; from any other
   * address a header is refused. @default [] (none)
   */
  proxyFrom?: string[];
  /** Time for a --proxy-from balancer's PROXY header to arrive, ms. @default 5000 */
  proxyTimeout?: number;
  /** Log lines as `text` (`TIME LEVEL TEXT`) or `json` (one object a line). @default 'text' */
  logFormat?: 'json' | 'text';
  /** Least severe level logged: debug, info, warn, error. @default SMTP_RECEIVE_LOG's, else 'info' */
  logLevel?: LogLevel;
  /** Where log lines go instead of stderr: an object with `write(line)` (tests, embedding). */
  logStream?: { write(chunk: string): unknown };
  /** Also log to syslog (RFC 5424): `HOST:PORT` over UDP, or a Unix datagram socket's path. The receiver's doSyslog() sends to /dev/log. */
  syslog?: string;
  /** Syslog facility name (mail, daemon, local0 … local7 …). @default 'mail' */
  syslogFacility?: string;
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

type Optional = 'receiverPath' | 'builtin' | 'queueDir' | 'workers' | 'maxDeliveries' | 'controlGroup' | 'logStream' | 'syslog';
export type ResolvedOptions = Required<Omit<ServeOptions, Optional | 'metrics' | keyof TlsServeOptions>>
  & Pick<ServeOptions, Optional> & { metrics: MetricsAddress | false } & ResolvedTls;

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
  if (o.logFormat !== undefined && o.logFormat !== 'json' && o.logFormat !== 'text') {
    throw new OptionError('logFormat', `must be json or text, got ${JSON.stringify(o.logFormat)}`);
  }
  if (o.logLevel !== undefined && !isLogLevel(o.logLevel)) throw new OptionError('logLevel', `must be debug, info, warn or error, got ${JSON.stringify(o.logLevel)}`);
  if (o.syslog !== undefined && !parseSyslogTarget(o.syslog)) {
    throw new OptionError('syslog', `expected HOST:PORT (UDP, e.g. 127.0.0.1:514 or [::1]:514) or the path of a Unix datagram socket (/dev/log), got ${JSON.stringify(o.syslog)}`);
  }
  if (o.syslogFacility !== undefined && !Object.hasOwn(FACILITIES, o.syslogFacility)) {
    throw new OptionError('syslogFacility', `must be one of ${Object.keys(FACILITIES).join(', ')}, got ${JSON.stringify(o.syslogFacility)}`);
  }
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
    maxClientsPerIp: int('maxClientsPerIp', o.maxClientsPerIp ?? 50, 0),
    ipv6PrefixLength: int('ipv6PrefixLength', o.ipv6PrefixLength ?? IPV6_PREFIX_DEFAULT, 1, 128),
    maxCommands: int('maxCommands', o.maxCommands ?? 10_000, 0),
    maxBadCommands: int('maxBadCommands', o.maxBadCommands ?? 10, 0),
    dataTimeout: int('dataTimeout', o.dataTimeout ?? 600_000, 0),
    maxLineLength: int('maxLineLength', o.maxLineLength ?? 4096, 512, 1024 * 1024),
    // 0 once resolved: the receiver's maxRecipients() / maxDataLength()
    maxRecipients: o.maxRecipients === undefined ? 0 : int('maxRecipients', o.maxRecipients, 1),
    maxSize: o.maxSize === undefined ? 0 : int('maxSize', o.maxSize, 1),
    runner: o.runner ?? true,
    immediate: o.immediate ?? true,
    retryMin: int('retryMin', o.retryMin ?? 300_000, 0),
    retryMax: int('retryMax', o.retryMax ?? 4_000_000, 0),
    maxLifetime: int('maxLifetime', o.maxLifetime ?? 5 * 24 * 3600_000, 0),
    deliverTimeout: int('deliverTimeout', o.deliverTimeout ?? 300_000, 1),
    maxDeliveries: o.maxDeliveries === undefined ? undefined : int('maxDeliveries', o.maxDeliveries, 1, 100_000),
    pollInterval: int('pollInterval', o.pollInterval ?? 5000, 10),
    shutdownGrace: int('shutdownGrace', o.shutdownGrace ?? 10_000, 0),
    lockWait: int('lockWait', o.lockWait ?? 10_000, 0),
    controlGroup: o.controlGroup,
    ...resolveTls(o),
    metrics: metricsAddress(o.metrics),
    proxyFrom: proxyFrom(o.proxyFrom ?? []),
    proxyTimeout: int('proxyTimeout', o.proxyTimeout ?? 5000, 1, 300_000),
    logFormat: o.logFormat ?? 'text',
    logLevel: o.logLevel ?? envLogLevel(),
    logStream: o.logStream,
    syslog: o.syslog,
    syslogFacility: o.syslogFacility ?? 'mail',
    auth: o.auth ?? true,
    dmarcReject: o.dmarcReject ?? false,
    dnsServers,
    authDnsTimeout: int('authDnsTimeout', o.authDnsTimeout ?? 2000, 1, 60_000),
    authTimeout: int('authTimeout', o.authTimeout ?? 5000, 1, 300_000),
  };
}

function metricsAddress(v: string | false | undefined): MetricsAddress | false {
  const a = parseMetricsAddress(v ?? DEFAULT_METRICS_ADDRESS);
  if (a === undefined) throw new OptionError('metrics', `expected HOST:PORT, [IPv6]:PORT, :PORT, PORT or off (e.g. 127.0.0.1:9525), got ${JSON.stringify(v)}`);
  return a;
}

function proxyFrom(entries: string[]): string[] {
  try {
    return checkProxyFrom(entries);
  } catch (err) {
    throw new OptionError('proxyFrom', (err as Error).message);
  }
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
