/**
 * TLS for tests: certificates made by the openssl binary into a temporary
 * directory, and SMTP clients that speak TLS (STARTTLS on a raw socket, or
 * implicit TLS), built on RawClient.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { RawClient } from './smtp.ts';

const run = promisify(execFile);
export const OPENSSL = '/usr/bin/openssl';

export interface TestCert {
  keyFile: string;
  certFile: string;
  key: Buffer;
  cert: Buffer;
  /** SHA-256 fingerprint, as a TLS peer certificate reports it (`fingerprint256`). */
  fingerprint: string;
}

/** A self-signed certificate for `cn` (and localhost, 127.0.0.1), key and cert in `dir` under `name`. */
export async function makeCert(dir: string, name: string, cn = 'mx.test.invalid'): Promise<TestCert> {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  await run(OPENSSL, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', `subjectAltName=DNS:${cn},DNS:localhost,IP:127.0.0.1`,
  ], { timeout: 30_000 });
  const [key, cert] = await Promise.all([readFile(keyFile), readFile(certFile)]);
  return { keyFile, certFile, key, cert, fingerprint: new X509Certificate(cert).fingerprint256 };
}

/** A temporary directory for certificates (and whatever else a test keeps there); `rm()` removes it. */
export async function certDir(): Promise<{ dir: string; rm: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'smtp-receive-tls-'));
  return { dir, rm: () => rm(dir, { recursive: true, force: true }) };
}

/** Starts TLS on a socket (the client side), trusting nothing but `ca` when given. */
export function handshake(options: ConnectionOptions, timeoutMs = 10_000): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ rejectUnauthorized: false, servername: 'localhost', ...options });
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no TLS handshake within ${timeoutMs} ms`)); }, timeoutMs);
    s.once('secureConnect', () => { clearTimeout(timer); resolve(s); });
    s.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

/** A client after EHLO, STARTTLS and the handshake (not yet a second EHLO). */
export async function startTls(port: number, options: ConnectionOptions = {}): Promise<{ client: RawClient; socket: TLSSocket; ehlo: string[] }> {
  const plain = await RawClient.greeted(port);
  const ehlo = (await plain.command('EHLO client.test')).lines;
  const r = await plain.command('STARTTLS');
  if (r.code !== 220) throw new Error(`STARTTLS: ${r.text}`);
  const socket = await handshake({ socket: plain.socket, ...options });
  return { client: RawClient.over(socket), socket, ehlo };
}

/** A client greeted on the implicit-TLS listener. */
export async function implicitTls(port: number, options: ConnectionOptions = {}): Promise<{ client: RawClient; socket: TLSSocket }> {
  const socket = await handshake({ host: '127.0.0.1', port, ...options });
  const client = RawClient.over(socket);
  const g = await client.read();
  if (g.code !== 220) throw new Error(`expected a 220 greeting, got ${g.text}`);
  return { client, socket };
}
