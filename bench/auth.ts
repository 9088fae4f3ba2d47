/**
 * `--auth on` for the bench: smtp-receive authenticates every message, its DNS
 * answered by a local server (test/helpers/dns.ts on 127.0.0.1), and the load
 * generator sends messages DKIM-signed (RSA 2048, relaxed/relaxed) by the
 * sender's domain, which publishes SPF for 127.0.0.1 and a DMARC policy: every
 * check passes with real work (an RSA verification per message). The workers'
 * answer cache means few look-ups reach the server: DNS costs less here than
 * on the Internet.
 */
import { generateKeyPairSync } from 'node:crypto';
import { dkimSign } from 'mailauth';
import { startDns, type TestDns } from '../test/helpers/dns.ts';
import { buildMessage } from './loadgen.ts';

const DOMAIN = 'bench.invalid';
const SELECTOR = 'bench';

export interface BenchAuth {
  /** `serve` flags: authentication on, DNS from our server. */
  serveArgs: string[];
  /** The load generator's message of `size` bytes for `to`, with a DKIM-Signature on top (and `.\r\n` at the end). */
  message(size: number, to: string): Promise<Buffer>;
  /** Look-ups our DNS server answered (the workers cache answers: a few per worker and minute). */
  lookups(): number;
  close(): Promise<void>;
}

export async function startBenchAuth(): Promise<BenchAuth> {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const dns: TestDns = await startDns(new Map([
    [DOMAIN, ['v=spf1 ip4:127.0.0.1 -all']],
    [`_dmarc.${DOMAIN}`, ['v=DMARC1; p=reject']],
    [`${SELECTOR}._domainkey.${DOMAIN}`, [`v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`]],
  ]));
  const key = privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
  return {
    serveArgs: ['--auth', 'on', '--dns-servers', dns.server],
    async message(size, to) {
      const built = buildMessage(size, to);
      const body = built.subarray(0, built.length - 3); // without `.\r\n`
      const sig = { signingDomain: DOMAIN, selector: SELECTOR, privateKey: key };
      const signed = await dkimSign(body, { ...sig, canonicalization: 'relaxed/relaxed', signatureData: [sig] });
      if (signed.errors.length || !signed.signatures.startsWith('DKIM-Signature:')) {
        throw new Error(`DKIM signing failed: ${signed.errors.map(String).join('; ') || 'no signature'}`);
      }
      return Buffer.concat([Buffer.from(signed.signatures), built]);
    },
    lookups: () => dns.queries.length,
    close: () => dns.close(),
  };
}
