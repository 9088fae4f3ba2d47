/**
 * The TLS and AUTH side of the SMTP listeners: which of STARTTLS and AUTH
 * smtp-server offers (and when), `--require-tls`, the implicit-TLS listener
 * and the reload of the key and certificate (SIGHUP).
 *
 * AUTH is offered only when the receiver overrides `checkAuth`, and only in a
 * TLS session unless `allowInsecureAuth`: it is disabled server-wide and
 * enabled per session (`session.disabledCommands`, smtp-server's per-session
 * list) once the session is secure, so EHLO before STARTTLS does not list it.
 */
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession, type SMTPServerAddress } from 'smtp-server';
import { log } from '../core/log.ts';
import { SmtpReply } from '../core/reply.ts';
import { onAuth } from './auth.ts';
import { refuse, type Context } from './context.ts';
import { loadTls, onSecure, TLS_DEFAULTS, type TlsMaterial } from './tls.ts';

export const mustStartTls = new SmtpReply(530, '5.7.0', 'Must issue a STARTTLS command first');

type Done = (err?: Error | null) => void;
type MailFromHandler = (address: SMTPServerAddress, session: SMTPServerSession, done: Done) => void;

const logged = new WeakSet<Error>();

/**
 * smtp-server's 'error' events, for the log. A client's failed TLS handshake
 * (an old protocol, no shared cipher, a scanner) is the client's problem: one
 * info line with OpenSSL's reason; anything else is a warning.
 */
export function logSmtpError(err: Error & { reason?: string; meta?: { stage?: string; remoteAddress?: string } }, implicitTls: boolean): void {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code.startsWith('ERR_SSL_') || code === 'TLSError' || code === 'ERR_TLS_HANDSHAKE_TIMEOUT') {
    // a TLS socket reports one failure on more than one event
    if (logged.has(err)) return;
    logged.add(err);
    log.info('TLS handshake%s with %s failed: %s', implicitTls ? ' (implicit TLS)' : '', err.meta?.remoteAddress ?? 'a client', err.reason ?? code);
    return;
  }
  log.warn('smtp%s: %s', implicitTls ? ' (implicit TLS)' : '', err.message);
}

/** Logs what the certificate is (and warns when it has expired). */
export function describeTls(m: TlsMaterial, what: string): void {
  log.info('%s: TLS certificate %s, valid until %s', what, m.subject, m.validTo);
  if (m.expired) log.warn('%s: the TLS certificate %s expired on %s', what, m.subject, m.validTo);
}

/**
 * The smtp-server options for TLS and AUTH (both listeners share them; the
 * implicit-TLS one adds `secure: true`). `checkAuth`: the receiver overrides it.
 */
export function tlsSmtpOptions(ctx: Context, material: TlsMaterial | undefined, checkAuth: boolean): Partial<SMTPServerOptions> {
  const { allowInsecureAuth } = ctx.opts;
  const disabled: string[] = [];
  if (!material) disabled.push('STARTTLS');
  if (!checkAuth || !allowInsecureAuth) disabled.push('AUTH');
  if (checkAuth && !material && !allowInsecureAuth) {
    log.warn('the receiver has checkAuth(), but AUTH is offered only over TLS: give --tls-key and --tls-cert (or --allow-insecure-auth)');
  }
  const afterTls = checkAuth ? disabled.filter((c) => c !== 'AUTH') : disabled;
  return {
    disabledCommands: disabled,
    hideSTARTTLS: !material,
    authMethods: ['PLAIN', 'LOGIN'],
    // AUTH is never required to send mail: without it the receiver's checks decide (no open relay by default)
    authOptional: true,
    allowInsecureAuth,
    ...(checkAuth ? { onAuth: onAuth(ctx) } : {}),
    onSecure: onSecure((session) => {
      if (afterTls !== disabled) session.disabledCommands = afterTls;
    }),
    ...(material ? { ...TLS_DEFAULTS, key: material.key, cert: material.cert } : {}),
  };
}

/** `--require-tls`: MAIL before STARTTLS gets `530 5.7.0` (counted as a refusal at stage 'tls'). */
export function requireTls(ctx: Context, next: MailFromHandler): MailFromHandler {
  if (!ctx.opts.requireTls) return next;
  return (address, session, done) => {
    if (!session.secure) return done(refuse('tls', 'tls-required', mustStartTls, session));
    next(address, session, done);
  };
}

/**
 * Re-reads the key and certificate and hands them to every listener: new TLS
 * sessions use them, established ones keep theirs. A file that cannot be read
 * or does not fit changes nothing (the error says why).
 */
export async function reloadTls(ctx: Context, servers: SMTPServer[]): Promise<TlsMaterial> {
  if (!ctx.opts.tls) throw new Error('TLS is not configured (no --tls-key / --tls-cert): nothing to reload');
  const m = await loadTls(ctx.opts.tls);
  for (const s of servers) s.updateSecureContext({ key: m.key, cert: m.cert });
  return m;
}
