/**
 * Message authentication as receivers see it: the SPF, DKIM, DMARC and ARC
 * verdicts the workers compute for every message (`message.auth`), and where
 * the Authentication-Results header they write goes in the stored message.
 */

/** RFC 8601 result keywords (section 2.7). */
export type AuthResult = 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror' | 'policy';

/** One check's verdict. */
export interface AuthenticationVerdict {
  result: AuthResult;
  /**
   * spf: the MAIL FROM domain (the HELO name for a null sender); dkim: the signing domain (d=);
   * dmarc: the author (From:) domain; arc: the domain of the last seal.
   */
  domain?: string;
  /** dkim: the key selector (s=). */
  selector?: string;
  /** dmarc: the policy in force for the domain (none, quarantine, reject); dkim: a local rule the signature broke (weak-key). */
  policy?: string;
  /** Why, in the checker's words ("body hash did not verify", "no key", "DNS failure: ETIMEOUT"), when it says. */
  reason?: string;
}

/** The verdicts of one message: `message.auth` in predeliver, deliver and `showqueue --json`. */
export interface MessageAuth {
  spf: AuthenticationVerdict;
  /** One verdict per DKIM-Signature header, in order; empty when the message is not signed. */
  dkim: AuthenticationVerdict[];
  dmarc: AuthenticationVerdict;
  arc: AuthenticationVerdict;
}

/**
 * What authentication changed at the top of the stored message, kept beside
 * it instead of rewriting a spooled body: readers see `bytes` in place of the
 * first `cut` stored bytes. `bytes` is our Authentication-Results header, then
 * (when forged ones were removed) the stored bytes up to the last forged
 * header with those headers left out. Postfix keeps header edits of its
 * milters the same way, beside the queued content.
 */
export interface StoredHead {
  bytes: Uint8Array;
  cut: number;
}
