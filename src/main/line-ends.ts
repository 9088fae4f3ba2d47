/**
 * Bare CR / bare LF policy: normalise to CRLF.
 *
 * smtp-server ends DATA only at CRLF.CRLF, so `\n.\n`, `\n.\r\n` or `\r.\r\n`
 * never end or split a message (no SMTP smuggling). On top of that, every lone
 * CR or LF in the content is stored as CRLF, so no stored message holds a bare
 * line ending that a later hop could read differently. Clean chunks (the
 * common case) pass through without a copy.
 */
const CR = 13;
const LF = 10;

export class LineEndNormaliser {
  /** The previous chunk ended with CR: whether it was bare depends on our first byte. */
  private pendingCR = false;
  /** Number of bare CR / LF fixed so far. */
  fixed = 0;

  fix(chunk: Buffer): Buffer {
    if (chunk.length === 0) return chunk;
    if (this.isClean(chunk)) {
      this.pendingCR = chunk[chunk.length - 1] === CR;
      return chunk;
    }
    return this.rewrite(chunk);
  }

  /** Bytes to append at the end of the data (a trailing bare CR gets its LF). */
  end(): Buffer | undefined {
    if (!this.pendingCR) return undefined;
    this.pendingCR = false;
    this.fixed++;
    return Buffer.from([LF]);
  }

  private isClean(chunk: Buffer): boolean {
    if (this.pendingCR && chunk[0] !== LF) return false;
    for (let i = chunk.indexOf(LF); i !== -1; i = chunk.indexOf(LF, i + 1)) {
      if (i === 0 ? !this.pendingCR : chunk[i - 1] !== CR) return false;
    }
    const last = chunk.length - 1;
    for (let i = chunk.indexOf(CR); i !== -1 && i < last; i = chunk.indexOf(CR, i + 1)) {
      if (chunk[i + 1] !== LF) return false;
    }
    return true;
  }

  private rewrite(chunk: Buffer): Buffer {
    const out = Buffer.allocUnsafe(chunk.length * 2 + 1);
    let n = 0;
    let prevCR = this.pendingCR;
    if (prevCR && chunk[0] !== LF) {
      out[n++] = LF; // the CR that ended the previous chunk was bare
      this.fixed++;
      prevCR = false;
    }
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === LF && !prevCR) {
        out[n++] = CR;
        this.fixed++;
      } else if (prevCR && b !== LF && i > 0) {
        out[n++] = LF;
        this.fixed++;
      }
      out[n++] = b;
      prevCR = b === CR;
    }
    this.pendingCR = prevCR;
    return out.subarray(0, n);
  }
}
