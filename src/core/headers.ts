/** Trace headers prepended to every stored message (RFC 5321 §4.4). */

export interface TraceInfo {
  id: string;
  helo: string;
  peerAddr: string;
  peerHost: string;
  ident: string;
  /** Our name. */
  hostname: string;
  /** 'SMTP' after HELO, 'ESMTP' after EHLO, with 'S' for TLS and 'A' for AUTH (RFC 3848): see `protocolName`. */
  protocol: string;
  /** The TLS session, recorded as Postfix does: `(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)`. */
  tls?: { protocol: string; cipher: string };
  to: readonly string[];
  /** Add `X-Envelope-To:` headers. */
  envelope: boolean;
  time: Date;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const p2 = (n: number): string => (n < 10 ? '0' : '') + n;

/** RFC 5322 date-time, in UTC: `Thu, 26 Nov 2026 12:22:30 +0000`. */
export function rfc5322Date(d: Date): string {
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} `
    + `${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())} +0000`;
}

/** Client-supplied text in a header comment: printable ASCII, no parentheses or backslashes. */
function clean(s: string): string {
  return s.replace(/[^\x21-\x7e]|[()\\]/g, '?').slice(0, 255) || 'unknown';
}

/** An address that is safe to put in a header line: no CR, LF or other control character. */
export function isHeaderSafe(address: string): boolean {
  return !/[\x00-\x1f\x7f]/.test(address);
}

/** The `with` protocol of RFC 3848: SMTP, ESMTP, ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both). */
export function protocolName(ehlo: boolean, tls: boolean, auth: boolean): string {
  return `${ehlo ? 'ESMTP' : 'SMTP'}${tls ? 'S' : ''}${auth ? 'A' : ''}`;
}

export function traceHeaders(t: TraceInfo): Buffer {
  const who = `${t.ident ? `${clean(t.ident)}@` : ''}${t.peerHost ? `${clean(t.peerHost)} ` : ''}[${t.peerAddr}]`;
  const using = t.tls ? `\r\n\t(using ${clean(t.tls.protocol)} with cipher ${clean(t.tls.cipher)})` : '';
  let out = `Received: from ${clean(t.helo)} (${who})${using}\r\n\tby ${t.hostname} (smtp-receive) with ${t.protocol} id ${t.id}`;
  if (t.to.length === 1 && isHeaderSafe(t.to[0]!)) out += `\r\n\tfor <${t.to[0]}>`;
  out += `; ${rfc5322Date(t.time)}\r\n`;
  if (t.envelope) {
    for (const rcpt of t.to) {
      if (!isHeaderSafe(rcpt)) throw new Error(`recipient ${JSON.stringify(rcpt)} contains a control character`);
      out += `X-Envelope-To: <${rcpt}>\r\n`;
    }
  }
  return Buffer.from(out, 'utf8');
}
