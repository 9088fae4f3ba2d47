/** The TLS and AUTH options of `serve` (part of ServeOptions), checked once at start-up. */
import { OptionError } from './options.ts';

export interface TlsServeOptions {
  /** PEM private key file for STARTTLS and the implicit-TLS listener (with tlsCert). Re-read on SIGHUP (`reloadTls`). */
  tlsKey?: string;
  /** PEM certificate file (the chain after it, if any), with tlsKey. */
  tlsCert?: string;
  /** Address of the implicit-TLS listener (port 465 style). @default host */
  tlsHost?: string;
  /** Port of the implicit-TLS listener (0: any free port); none when not set. Needs tlsKey and tlsCert. */
  tlsPort?: number;
  /** Refuse MAIL before STARTTLS with `530 5.7.0` (the implicit-TLS listener is TLS already). @default false */
  requireTls?: boolean;
  /** Offer AUTH (when the receiver has checkAuth) without TLS too: passwords in clear text. @default false */
  allowInsecureAuth?: boolean;
  /** Pause before answering a failed AUTH with 535, ms (slows password guessing). @default 1000 */
  authFailureDelay?: number;
  /** Failed AUTHs (5xx) in one connection; the last one's reply is followed by `421 4.7.0` and the connection closes. 0: no limit. @default 3 */
  maxAuthFailures?: number;
}

export interface ResolvedTls {
  /** The key and certificate files, when TLS is configured. */
  tls: { keyFile: string; certFile: string } | undefined;
  tlsHost: string | undefined;
  tlsPort: number | undefined;
  requireTls: boolean;
  allowInsecureAuth: boolean;
  authFailureDelay: number;
  maxAuthFailures: number;
}

export function resolveTls(o: TlsServeOptions & { host?: string }): ResolvedTls {
  if (o.tlsKey !== undefined && !o.tlsKey) throw new OptionError('tlsKey', 'is empty: give the path of a PEM private key file');
  if (o.tlsCert !== undefined && !o.tlsCert) throw new OptionError('tlsCert', 'is empty: give the path of a PEM certificate file');
  if (o.tlsKey && !o.tlsCert) throw new OptionError('tlsCert', 'is missing: the TLS private key needs its certificate');
  if (o.tlsCert && !o.tlsKey) throw new OptionError('tlsKey', 'is missing: the TLS certificate needs its private key');
  const tls = o.tlsKey && o.tlsCert ? { keyFile: o.tlsKey, certFile: o.tlsCert } : undefined;
  if (o.tlsPort !== undefined) {
    if (!Number.isInteger(o.tlsPort) || o.tlsPort < 0 || o.tlsPort > 65535) {
      throw new OptionError('tlsPort', `must be a whole number from 0 to 65535, got ${JSON.stringify(o.tlsPort)}`);
    }
    if (!tls) throw new OptionError('tlsPort', 'an implicit-TLS listener needs a TLS key and certificate');
  }
  if (o.tlsHost !== undefined && o.tlsPort === undefined) throw new OptionError('tlsPort', 'is missing: tlsHost needs a port');
  if (o.requireTls && !tls) throw new OptionError('requireTls', 'needs a TLS key and certificate, to offer STARTTLS');
  const delay = o.authFailureDelay ?? 1000;
  if (!Number.isInteger(delay) || delay < 0 || delay > 60_000) {
    throw new OptionError('authFailureDelay', `must be a whole number from 0 to 60000, got ${JSON.stringify(delay)}`);
  }
  const maxAuthFailures = o.maxAuthFailures ?? 3;
  if (!Number.isSafeInteger(maxAuthFailures) || maxAuthFailures < 0) {
    throw new OptionError('maxAuthFailures', `must be a whole number, 0 or more (0: no limit), got ${JSON.stringify(maxAuthFailures)}`);
  }
  return {
    tls,
    tlsHost: o.tlsPort === undefined ? undefined : o.tlsHost ?? o.host ?? '127.0.0.1',
    tlsPort: o.tlsPort,
    requireTls: o.requireTls ?? false,
    allowInsecureAuth: o.allowInsecureAuth ?? false,
    authFailureDelay: delay,
    maxAuthFailures,
  };
}
