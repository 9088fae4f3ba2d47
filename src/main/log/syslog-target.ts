/** Where syslog lines go (`--syslog`) and under which facility (`--syslog-facility`). */
export type SyslogTarget =
  | { kind: 'udp'; host: string; port: number }
  /** A Unix datagram socket: the local syslog daemon's `/dev/log`, or another path. */
  | { kind: 'unix'; path: string };

/** The local syslog daemon's socket. */
export const DEV_LOG = '/dev/log';

/** RFC 5424 facility codes by name. */
export const FACILITIES: Readonly<Record<string, number>> = {
  kern: 0, user: 1, mail: 2, daemon: 3, auth: 4, syslog: 5, lpr: 6, news: 7, uucp: 8, cron: 9, authpriv: 10, ftp: 11,
  local0: 16, local1: 17, local2: 18, local3: 19, local4: 20, local5: 21, local6: 22, local7: 23,
};

/**
 * `HOST:PORT` or `[IPv6]:PORT` (UDP), or an absolute path (a Unix datagram socket such as /dev/log);
 * undefined when it is neither.
 */
export function parseSyslogTarget(v: string): SyslogTarget | undefined {
  if (v.startsWith('/')) return { kind: 'unix', path: v };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(v);
  if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) return undefined;
  return { kind: 'udp', host: m[1] ?? m[2]!, port: Number(m[3]) };
}

export function describeSyslogTarget(t: SyslogTarget): string {
  if (t.kind === 'unix') return t.path;
  return `udp://${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}
