/**
 * The `smtp-receive` command. `serve` runs the receiver; later subcommands
 * (runqueue, showqueue, queue operations) live in their own modules.
 */
import { log } from '../core/log.ts';
import { parseHostPort } from './address.ts';
import { authFlags } from './auth-options.ts';
import { BUILTIN_FLAGS, BUILTIN_OPTION_FLAGS, BUILTIN_USAGE, builtinFlagValues, builtinFromFlags } from './builtin-flags.ts';
import { OptionError, type ServeOptions } from './options.ts';
import { formatAddress, startServer } from './server.ts';
import { CommandUsageError, wholeNumber, parseCommandArgs } from './command.ts';
import { isQueueOp, queueOpCommand } from './queue-commands.ts';
import { runqueue } from './runqueue.ts';
import { showqueueCommand } from './showqueue.ts';

const USAGE = `Usage: smtp-receive serve [RECEIVER] [options]
       smtp-receive runqueue [--receiver FILE] [--queue DIR] [ids...]
       smtp-receive showqueue [--receiver FILE] [--queue DIR] [--json [--bodies]] [ids...]
       smtp-receive flush | delete | hold | release | requeue [--queue DIR] [ID... | ALL]
       (each command takes --help)

Receive mail over SMTP into a durable queue, and deliver it. RECEIVER is a
module that default-exports a Receiver subclass. Without one, a built-in
receiver delivers: Maildir (the default: each recipient's copy into
./mail/ADDRESS/new/), --webhook or --relay. Each accepts mail for the
local domains (--domain) only.

Options:
  --receiver FILE          receiver module (same as the RECEIVER argument)
${BUILTIN_USAGE}  --listen HOST:PORT       address to listen on (default 127.0.0.1:2525; [::1]:2525 for IPv6,
                           :2525 for every IPv4 address, 2525 for 127.0.0.1:2525)
  --queue DIR              queue directory (default: the receiver's queueDirectory(), ./queue)
  --domain NAME            a local domain to accept mail for; repeat for more (default localhost)
  --hostname NAME          name in the greeting and Received headers (default: this host's name)
  --greet-pause MS         wait MS before the greeting; a client that talks first is refused (default 0)
  --no-reverse-dns         do not look up client host names
  --dns-timeout MS         time limit of a reverse lookup (default 1000, at most 1500)
  --ident                  ask the client's identd (RFC 1413) for the user name
  --ident-timeout MS       time limit of an ident query (default 1000)
  --inline-max BYTES       largest message stored inside LMDB rather than a spool file (default 131072)
  --hook-timeout MS        time limit of checkAccess/checkMailFrom/checkRcptTo (default 10000)
  --predeliver-timeout MS  time limit of predeliver (default 30000)
  --workers N              worker threads for hooks (default: number of CPUs)
  --worker-queue N         hook tasks that may wait for a worker; beyond it 451 4.3.2 (default 256)
  --max-clients N          most concurrent connections (default 1000; each listener counts its own)
  --max-clients-per-ip N   most concurrent connections from one client address; one more gets
                           421 4.7.0 (default 50; 0: no limit)
  --ipv6-prefix-length N   --max-clients-per-ip counts an IPv6 client by its /N network, as one
                           host usually holds a /64 (default 64; 128: per address)
  --max-commands N         most commands in one session, then 421 4.7.0 (default 10000; 0: no limit)
  --max-bad-commands N     after N bad commands (answered 500-504 or 555) in one session, 421 4.7.0
                           (default 10; 0: no limit)
  --idle-timeout MS        close a session idle this long with 421 4.4.2 (default 60000)
  --data-timeout MS        most time from the 354 to the final dot, however slowly the data
                           trickles in, then 421 4.4.2 (default 600000; 0: no limit)
  --max-line-length BYTES  longest command line; a longer one gets 421 4.7.0 (default 4096)
  --max-recipients N       recipients per message, then 452 4.5.3 (default: the receiver's
                           maxRecipients(), 10000)
  --max-size BYTES         message size, then 552 5.3.4 (default: the receiver's maxDataLength(),
                           20000000)
  --tls-key FILE           PEM private key for STARTTLS and --listen-tls (with --tls-cert);
                           both files are read again on SIGHUP, for new sessions
  --tls-cert FILE          PEM certificate (chain) for that key; TLS 1.2 and 1.3 only
  --listen-tls HOST:PORT   also listen for implicit TLS (port 465 style; same forms as --listen)
  --require-tls            refuse MAIL before STARTTLS (530 5.7.0)
  --allow-insecure-auth    offer AUTH (when the receiver has checkAuth) without TLS too;
                           by default AUTH is offered only inside TLS
  --max-auth-failures N    the Nth refused AUTH (535 or another 5xx; a 454 does not count) in one
                           session is followed by 421 4.7.0, closing it (default 3; 0: no limit)
  --no-runner              do not deliver from this process (leave it to runqueue)
  --queue-only             no delivery attempt right after the 250; the runner finds the message
  --deliver-timeout MS     time limit of one deliver (default 300000)
  --max-deliveries N       delivery attempts in flight at once (default 32 x --workers)
  --retry-min MS           first retry delay (default 300000)
  --retry-max MS           longest retry delay (default 4000000)
  --max-lifetime MS        queue lifetime before a message goes on hold (default 432000000, 5 days)
  --shutdown-grace MS      on SIGTERM, time for deliveries in flight to finish before their leases
                           are released for the next runner (default 10000)
  --lock-wait MS           when a queue command holds the queue (no daemon was running), wait
                           this long for it (default 10000); another serve on it is refused at once
  --control-group NAME     let this group (name or gid) use the control socket QUEUE/control.sock
                           too (mode 0660; default: only this user, 0600)
  --metrics HOST:PORT      HTTP listener for /metrics (Prometheus), /healthz and /readyz
                           (default 127.0.0.1:9525; off: none)
  --proxy-from CIDR,...    load balancers (addresses or CIDR ranges) that open each connection
                           with a PROXY protocol header, v1 or v2 (HAProxy send-proxy /
                           send-proxy-v2): the session sees the client's address; a header
                           from any other address is refused (see docs/scale-out.md)
  --proxy-timeout MS       time for a --proxy-from balancer's header to arrive (default 5000)
  --log-format FORMAT      the log on stderr: text (TIME LEVEL TEXT, the default) or json (one
                           object a line: level, time, event, id … and msg, the text)
  --log-level LEVEL        least severe level logged: debug, info, warn or error
                           (default: SMTP_RECEIVE_LOG, else info)
  --syslog TARGET          also send every log line to syslog (RFC 5424): HOST:PORT over UDP, or the
                           path of a Unix datagram socket; a receiver whose doSyslog() is true sends
                           to /dev/log without it
  --syslog-facility NAME   syslog facility: mail (default), daemon, user, local0 … local7
  --auth MODE              on (the default) or off: SPF, DKIM, DMARC and ARC verdicts for each message,
                           computed in the workers: message.auth and an Authentication-Results header
  --dmarc-reject           refuse (550 5.7.1) a message that fails DMARC where the domain's policy
                           is reject (default: accept it and mark the verdict)
  --dns-servers LIST       DNS servers for authentication, IP[:PORT],... ([IPv6]:PORT; default: the system's)
  --auth-dns-timeout MS    time limit of one authentication DNS look-up (default 2000)
  --auth-timeout MS        time limit of all the look-ups of one message; later ones give
                           temperror, never a refusal (default 5000)
  -h, --help               show this help

Signals:
  SIGTERM, SIGINT          stop: finish the sessions and deliveries in flight (--shutdown-grace)
  SIGHUP                   reload the TLS key and certificate; open sessions stay up, and a
                           file that cannot be read or does not fit keeps the old ones (logged)

Environment:
  SMTP_RECEIVE_LOG         log level: debug, info (default), warn or error (--log-level overrides it
                           for serve); the log goes to stderr, one line per session and per message
                           event (queued, rejected, deferred, delivered, expired)
`;

const num = wholeNumber;

/** `--listen` and `--listen-tls`: see parseHostPort. */
export function parseListen(v: string, flag = '--listen'): { host: string; port: number } {
  const address = parseHostPort(v);
  if (!address) {
    throw new CommandUsageError(`${flag}: expected HOST:PORT, [IPv6]:PORT, :PORT or PORT (e.g. 127.0.0.1:2525, [::1]:2525, :25), got ${JSON.stringify(v)}`);
  }
  return address;
}

/** The flags `serve` takes (each documented in USAGE; a test checks both ways). */
export const SERVE_FLAGS = {
  receiver: { type: 'string' }, listen: { type: 'string' }, queue: { type: 'string' },
  domain: { type: 'string', multiple: true }, hostname: { type: 'string' },
  'greet-pause': { type: 'string' }, 'no-reverse-dns': { type: 'boolean' }, 'dns-timeout': { type: 'string' },
  ident: { type: 'boolean' }, 'ident-timeout': { type: 'string' }, 'inline-max': { type: 'string' },
  'hook-timeout': { type: 'string' }, 'predeliver-timeout': { type: 'string' },
  workers: { type: 'string' }, 'worker-queue': { type: 'string' }, 'max-clients': { type: 'string' },
  'max-clients-per-ip': { type: 'string' }, 'ipv6-prefix-length': { type: 'string' }, 'max-commands': { type: 'string' }, 'max-bad-commands': { type: 'string' },
  'idle-timeout': { type: 'string' }, 'data-timeout': { type: 'string' }, 'max-line-length': { type: 'string' },
  'max-recipients': { type: 'string' }, 'max-size': { type: 'string' },
  'no-runner': { type: 'boolean' }, 'queue-only': { type: 'boolean' }, 'deliver-timeout': { type: 'string' }, 'max-deliveries': { type: 'string' },
  'retry-min': { type: 'string' }, 'retry-max': { type: 'string' }, 'max-lifetime': { type: 'string' },
  'shutdown-grace': { type: 'string' }, 'lock-wait': { type: 'string' }, 'control-group': { type: 'string' },
  'log-format': { type: 'string' }, 'log-level': { type: 'string' }, syslog: { type: 'string' }, 'syslog-facility': { type: 'string' },
  ...BUILTIN_FLAGS,
  'tls-key': { type: 'string' }, 'tls-cert': { type: 'string' }, 'listen-tls': { type: 'string' },
  'require-tls': { type: 'boolean' }, 'allow-insecure-auth': { type: 'boolean' }, 'max-auth-failures': { type: 'string' },
  metrics: { type: 'string' },
  'proxy-from': { type: 'string', multiple: true }, 'proxy-timeout': { type: 'string' },
  auth: { type: 'string' }, 'dmarc-reject': { type: 'boolean' }, 'dns-servers': { type: 'string' },
  'auth-dns-timeout': { type: 'string' }, 'auth-timeout': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export function parseServeArgs(argv: string[]): ServeOptions | 'help' {
  const parsed = parseCommandArgs(argv, SERVE_FLAGS);
  const { values: v, positionals } = parsed;
  if (v.help) return 'help';
  if (positionals.length > 1) throw new CommandUsageError(`serve takes one receiver module, got ${positionals.length} arguments`);
  if (positionals.length === 1 && v.receiver) throw new CommandUsageError('give the receiver either as an argument or with --receiver, not both');
  const listen = v.listen ? parseListen(v.listen) : undefined;
  const listenTls = v['listen-tls'] ? parseListen(v['listen-tls'], '--listen-tls') : undefined;
  const receiverPath = v.receiver ?? positionals[0];
  const builtin = builtinFromFlags(builtinFlagValues(v), receiverPath);
  return {
    receiverPath,
    builtin,
    host: listen?.host,
    port: listen?.port,
    queueDir: v.queue,
    domains: v.domain,
    hostname: v.hostname,
    greetPause: num('greet-pause', v['greet-pause']),
    reverseDns: v['no-reverse-dns'] ? false : undefined,
    dnsTimeout: num('dns-timeout', v['dns-timeout']),
    ident: v.ident,
    identTimeout: num('ident-timeout', v['ident-timeout']),
    inlineMax: num('inline-max', v['inline-max']),
    hookTimeout: num('hook-timeout', v['hook-timeout']),
    predeliverTimeout: num('predeliver-timeout', v['predeliver-timeout']),
    workers: num('workers', v.workers),
    workerQueue: num('worker-queue', v['worker-queue']),
    maxClients: num('max-clients', v['max-clients']),
    maxClientsPerIp: num('max-clients-per-ip', v['max-clients-per-ip']),
    ipv6PrefixLength: num('ipv6-prefix-length', v['ipv6-prefix-length']),
    maxCommands: num('max-commands', v['max-commands']),
    maxBadCommands: num('max-bad-commands', v['max-bad-commands']),
    socketTimeout: num('idle-timeout', v['idle-timeout']),
    dataTimeout: num('data-timeout', v['data-timeout']),
    maxLineLength: num('max-line-length', v['max-line-length']),
    maxRecipients: num('max-recipients', v['max-recipients']),
    maxSize: num('max-size', v['max-size']),
    runner: v['no-runner'] ? false : undefined,
    immediate: v['queue-only'] ? false : undefined,
    deliverTimeout: num('deliver-timeout', v['deliver-timeout']),
    maxDeliveries: num('max-deliveries', v['max-deliveries']),
    retryMin: num('retry-min', v['retry-min']),
    retryMax: num('retry-max', v['retry-max']),
    maxLifetime: num('max-lifetime', v['max-lifetime']),
    shutdownGrace: num('shutdown-grace', v['shutdown-grace']),
    lockWait: num('lock-wait', v['lock-wait']),
    controlGroup: v['control-group'],
    tlsKey: v['tls-key'],
    tlsCert: v['tls-cert'],
    tlsHost: listenTls?.host,
    tlsPort: listenTls?.port,
    requireTls: v['require-tls'],
    allowInsecureAuth: v['allow-insecure-auth'],
    maxAuthFailures: num('max-auth-failures', v['max-auth-failures']),
    metrics: v.metrics,
    proxyFrom: v['proxy-from']?.flatMap((list) => list.split(',')).filter((e) => e.trim() !== ''),
    proxyTimeout: num('proxy-timeout', v['proxy-timeout']),
    logFormat: v['log-format'] as ServeOptions['logFormat'],
    logLevel: v['log-level'] as ServeOptions['logLevel'],
    syslog: v.syslog,
    syslogFacility: v['syslog-facility'],
    ...authFlags(v),
  };
}

/** Option names in errors from resolveOptions → the flag a CLI user typed. */
const FLAG: Record<string, string> = {
  port: 'listen', host: 'listen', domains: 'domain', greetPause: 'greet-pause', dnsTimeout: 'dns-timeout',
  identTimeout: 'ident-timeout', inlineMax: 'inline-max', hookTimeout: 'hook-timeout',
  predeliverTimeout: 'predeliver-timeout', workerQueue: 'worker-queue', maxClients: 'max-clients',
  deliverTimeout: 'deliver-timeout', maxDeliveries: 'max-deliveries', retryMin: 'retry-min', retryMax: 'retry-max', maxLifetime: 'max-lifetime',
  shutdownGrace: 'shutdown-grace', lockWait: 'lock-wait', controlGroup: 'control-group',
  maxClientsPerIp: 'max-clients-per-ip', ipv6PrefixLength: 'ipv6-prefix-length', maxCommands: 'max-commands', maxBadCommands: 'max-bad-commands',
  socketTimeout: 'idle-timeout', dataTimeout: 'data-timeout', maxLineLength: 'max-line-length',
  maxRecipients: 'max-recipients', maxSize: 'max-size',
  tlsKey: 'tls-key', tlsCert: 'tls-cert', tlsHost: 'listen-tls', tlsPort: 'listen-tls', requireTls: 'require-tls',
  maxAuthFailures: 'max-auth-failures',
  proxyFrom: 'proxy-from', proxyTimeout: 'proxy-timeout',
  logFormat: 'log-format', logLevel: 'log-level', syslogFacility: 'syslog-facility',
  dnsServers: 'dns-servers', authDnsTimeout: 'auth-dns-timeout', authTimeout: 'auth-timeout',
  ...BUILTIN_OPTION_FLAGS,
};

async function serve(argv: string[]): Promise<void> {
  const options = parseServeArgs(argv);
  if (options === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  // signal handlers first: a supervisor may signal as soon as it reads the "listening" line
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('%s: stopping', signal);
    (server ? server.close() : Promise.resolve()).then(() => process.exit(0), (err: Error) => {
      log.error('stopping failed: %s', err.stack);
      process.exit(1);
    });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // SIGHUP reloads the TLS key and certificate (and never ends the daemon, TLS or not)
  process.on('SIGHUP', () => {
    if (!server || stopping) return;
    if (!server.options.tls) return log.info('SIGHUP: no TLS key and certificate to reload (--tls-key, --tls-cert)');
    server.reloadTls().then(
      () => log.info('SIGHUP: TLS key and certificate reloaded; new sessions use them'),
      (err: Error) => log.error('SIGHUP: TLS key and certificate not reloaded, the old ones stay in use: %s',
        err instanceof OptionError ? `--${FLAG[err.option] ?? err.option}: ${err.message.replace(/^option \S+: /, '')}` : err.message),
    );
  });
  server = await startServer(options);
  if (stopping) {
    await server.close();
    return;
  }
  const metrics = server.metricsHost === undefined ? '' : `, metrics on http://${formatAddress(server.metricsHost, server.metricsPort!)}/metrics`;
  process.stdout.write(`smtp-receive: listening on ${formatAddress(server.host, server.port)}, queue ${server.queueDir}${metrics}\n`);
  if (server.tls) process.stdout.write(`smtp-receive: listening on ${formatAddress(server.tls.host, server.tls.port)} (implicit TLS)\n`);
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'serve') {
      await serve(rest);
      return -1; // keeps running
    }
    if (command === 'runqueue') return await runqueue(rest);
    if (command === 'showqueue') return await showqueueCommand(rest);
    if (isQueueOp(command)) return await queueOpCommand(command, rest);
    if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    }
    throw new CommandUsageError(`unknown command ${JSON.stringify(command)} (try: smtp-receive serve --help)`);
  } catch (err) {
    if (err instanceof CommandUsageError) {
      process.stderr.write(`smtp-receive: ${err.message}\n`);
      return 2;
    }
    if (err instanceof OptionError) {
      process.stderr.write(`smtp-receive: --${FLAG[err.option] ?? err.option}: ${err.message.replace(/^option \S+: /, '')}\n`);
      return 2;
    }
    process.stderr.write(`smtp-receive: ${(err as Error).message}\n`);
    return 1;
  }
}

const isEntry = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isEntry) {
  main(process.argv.slice(2)).then((code) => {
    if (code >= 0) process.exitCode = code;
  });
}
