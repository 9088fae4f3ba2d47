/**
 * SPF, DKIM, DMARC and ARC for one message, in a worker, with mailauth: the
 * typed verdicts (`message.auth`) and the head of the stored message that
 * carries our Authentication-Results header. It never throws: a failure of
 * its own is logged and gives `temperror` verdicts; DNS trouble gives
 * `temperror` through mailauth.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { AuthenticateOptions, AuthenticateResult, AuthStatus } from 'mailauth';
import type { AuthResult, AuthenticationVerdict, MessageAuth, StoredHead } from '../core/auth.ts';
import { log, stackOf } from '../core/log.ts';
import type { AuthSettings } from '../core/tasks.ts';
import { forgedRanges, headOf } from './auth-header.ts';
import { AuthDns } from './dns.ts';

/** How far into a spooled message the header section is looked at for forged headers. */
const HEADER_SCAN_MAX = 1024 * 1024;

const RESULTS = new Set<string>(['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror', 'policy']);

/**
 * mailauth 4 says `neutral` for these DKIM outcomes; RFC 6376 section 6.1 makes them
 * PERMFAIL, which RFC 8601 section 2.7.1 writes as `fail` (the signature did not verify)
 * or `permerror` (it cannot be verified: no usable key).
 */
const DKIM_NEUTRAL_AS: Record<string, AuthResult> = {
  'body hash did not verify': 'fail',
  'no key': 'permerror',
  'unknown key version': 'permerror',
  'unknown key type': 'permerror',
  'invalid public key': 'permerror',
};

export interface AuthInput {
  /** The stored bytes of an inline message (undefined: spooled in `file`). */
  inline: Buffer | undefined;
  file: string;
  /** Our trace headers at the top of the stored bytes: the message as received follows. */
  traceLength: number;
  peerAddr: string;
  helo: string;
  /** MAIL FROM ('' for the null sender). */
  from: string;
}

export interface AuthOutcome {
  auth: MessageAuth;
  head: StoredHead;
}

const keyword = (r: string | undefined): AuthResult => (r === 'temperr' ? 'temperror' : r && RESULTS.has(r) ? r as AuthResult : 'none');

/** A verdict without the fields that are absent. */
function verdict(result: AuthResult, more: Omit<AuthenticationVerdict, 'result'>): AuthenticationVerdict {
  const v: AuthenticationVerdict = { result };
  for (const [k, value] of Object.entries(more) as Array<[keyof typeof more, string | undefined]>) if (value) v[k] = value;
  return v;
}

function dkimVerdict(status: AuthStatus, domain?: string, selector?: string): AuthenticationVerdict {
  const mapped = status.result === 'neutral' && status.comment ? DKIM_NEUTRAL_AS[status.comment] : undefined;
  return verdict(mapped ?? keyword(status.result), { domain, selector, policy: status.policy?.['dkim-rules'], reason: status.comment });
}

export function verdicts(r: AuthenticateResult): MessageAuth {
  const signatures = (r.dkim.results ?? []).filter((d) => d.signingDomain);
  const dmarc = r.dmarc;
  const arc = r.arc;
  return {
    spf: r.spf ? verdict(keyword(r.spf.status.result), { domain: r.spf.domain, reason: r.spf.status.comment }) : { result: 'none' },
    dkim: signatures.map((d) => dkimVerdict(d.status, d.signingDomain, d.selector)),
    dmarc: dmarc
      ? verdict(keyword(dmarc.status.result), { domain: dmarc.status.header?.from, policy: dmarc.policy, reason: dmarc.status.comment })
      : verdict('none', { reason: (r as { dmarcSkipReason?: string }).dmarcSkipReason }),
    arc: arc ? verdict(keyword(arc.status.result), { domain: arc.signature ? arc.signature.signingDomain : undefined, reason: arc.status.comment }) : { result: 'none' },
  };
}

/** mailauth's Authentication-Results header (it writes Received-SPF too: not kept), with our DKIM keywords. */
export function resultsHeader(r: AuthenticateResult, hostname: string): string {
  let header = r.headers.split(/\r\n(?![ \t])/).find((h) => /^Authentication-Results:/i.test(h));
  if (!header) return `Authentication-Results: ${hostname}; none\r\n`;
  for (const [comment, result] of Object.entries(DKIM_NEUTRAL_AS)) {
    header = header.replaceAll(`\r\n dkim=neutral (${comment})`, `\r\n dkim=${result} (${comment})`);
  }
  return `${header.replace(/\r\n$/, '')}\r\n`;
}

/** The top of a spooled message, up to the end of its header section (or HEADER_SCAN_MAX bytes). */
async function headerSection(file: string): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    while (size < HEADER_SCAN_MAX) {
      const chunk = Buffer.allocUnsafe(64 * 1024);
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, size);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      size += bytesRead;
      const seen = Buffer.concat(chunks, size);
      if (seen.includes('\r\n\r\n')) return seen;
    }
    return Buffer.concat(chunks, size);
  } finally {
    await fh.close();
  }
}

export class Authenticator {
  private readonly dns: AuthDns;
  /**
   * mailauth takes ~0.5 s of CPU to load (and much longer on a busy machine): it loads in the
   * background, so the pool's start-up (and `serve`'s "listening") does not wait for it; the
   * first message waits if it comes sooner.
   */
  private readonly mailauth = import('mailauth');

  constructor(private readonly settings: AuthSettings, private readonly hostname: string) {
    this.dns = new AuthDns(settings.dnsServers, settings.lookupTimeout);
    this.mailauth.catch(() => {}); // a failure to load is reported by run()
  }

  async run(input: AuthInput): Promise<AuthOutcome> {
    let header: string;
    let auth: MessageAuth;
    try {
      const { authenticate } = await this.mailauth;
      const options: AuthenticateOptions = {
        ip: input.peerAddr,
        helo: input.helo || undefined,
        sender: input.from || undefined,
        mta: this.hostname,
        // the message's time limit for DNS starts now (not while mailauth was loading)
        resolver: this.dns.forMessage(Date.now() + this.settings.messageTimeout) as AuthenticateOptions['resolver'],
        disableBimi: true,
      };
      const message = input.inline ? input.inline.subarray(input.traceLength) : createReadStream(input.file, { start: input.traceLength });
      const result = await authenticate(message, options);
      auth = verdicts(result);
      header = resultsHeader(result, this.hostname);
    } catch (err) {
      log.error('authentication of %s failed: %s', input.file, stackOf(err));
      const failed: AuthenticationVerdict = { result: 'temperror', reason: 'authentication failed' };
      auth = { spf: failed, dkim: [], dmarc: failed, arc: failed };
      header = `Authentication-Results: ${this.hostname}; none\r\n`;
    }
    const top = input.inline ?? await headerSection(input.file);
    return { auth, head: headOf(header, top, forgedRanges(top, this.hostname)) };
  }
}

/** The policy decision `--dmarc-reject` takes: DMARC failed where the domain says reject. */
export function dmarcRejects(auth: MessageAuth): boolean {
  return auth.dmarc.result === 'fail' && auth.dmarc.policy === 'reject';
}
