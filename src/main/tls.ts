/**
 * TLS for the receiving daemon: the key and certificate files (read and
 * checked at start-up and again on every reload), the TLS options handed to
 * smtp-server, and what each session learns when its TLS session is up.
 *
 * smtp-server does the protocol: STARTTLS (it discards whatever the client
 * pipelined in plaintext behind the command: test/tls-starttls.test.ts probes
 * it), the implicit-TLS listener (`secure: true`), and new contexts for new
 * sessions with `updateSecureContext` while established sessions keep theirs.
 */
import { readFile } from 'node:fs/promises';
import { createSecureContext, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { X509Certificate } from 'node:crypto';
import type { SMTPServerSession } from 'smtp-server';
import type { TlsInfo } from '../core/types.ts';
import { OptionError } from './options.ts';

/** The key and certificate as read from their files, checked to belong together. */
export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
  /** For the log: the certificate's subject and end of validity. */
  subject: string;
  validTo: string;
  expired: boolean;
}

/** TLS 1.2 and 1.3 only; Node's default cipher list (forward secrecy, AEAD first). */
export const TLS_DEFAULTS = { minVersion: 'TLSv1.2', honorCipherOrder: true } as const;

const why = (err: unknown): string => String((err as Error)?.message ?? err).replace(/^error:[0-9A-F]+:/, '');

/**
 * Reads and checks the key and certificate files. Every error is an OptionError
 * naming the option that is wrong (tlsKey, tlsCert), the file and the reason.
 */
export async function loadTls(files: { keyFile: string; certFile: string }): Promise<TlsMaterial> {
  const read = async (option: 'tlsKey' | 'tlsCert', path: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new OptionError(option, `cannot read ${path}: ${why(err)}`);
    }
  };
  const [key, cert] = await Promise.all([read('tlsKey', files.keyFile), read('tlsCert', files.certFile)]);
  try {
    createSecureContext({ key });
  } catch (err) {
    throw new OptionError('tlsKey', `${files.keyFile} is not a usable PEM private key (unencrypted): ${why(err)}`);
  }
  let x509: X509Certificate;
  try {
    createSecureContext({ cert });
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new OptionError('tlsCert', `${files.certFile} is not a usable PEM certificate: ${why(err)}`);
  }
  try {
    createSecureContext({ ...TLS_DEFAULTS, key, cert });
  } catch (err) {
    throw new OptionError('tlsCert', `the certificate in ${files.certFile} does not match the private key in ${files.keyFile}: ${why(err)}`);
  }
  return {
    key, cert, subject: x509.subject.replace(/\n/g, ', '), validTo: x509.validTo,
    expired: Date.parse(x509.validTo) < Date.now(),
  };
}

/** Per-session TLS facts (protocol and cipher), from onSecure on. */
const sessions = new WeakMap<SMTPServerSession, TlsInfo>();

/** The session's TLS protocol and cipher, when it runs over TLS. */
export function tlsOf(session: SMTPServerSession): TlsInfo | undefined {
  return sessions.get(session);
}

/**
 * smtp-server's onSecure: runs once the TLS session is up (after STARTTLS, or
 * before the greeting on the implicit-TLS listener). Records the protocol and
 * cipher, and lets `secured` adjust the session (AUTH becomes available).
 */
export function onSecure(secured: (session: SMTPServerSession) => void) {
  return (socket: Socket | TLSSocket, session: SMTPServerSession, done: (err?: Error | null) => void): void => {
    const tls = socket as TLSSocket;
    sessions.set(session, { protocol: tls.getProtocol() ?? 'unknown', cipher: tls.getCipher()?.name ?? 'unknown' });
    secured(session);
    done();
  };
}
