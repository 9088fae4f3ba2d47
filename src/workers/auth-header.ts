/**
 * The Authentication-Results header in the stored message (RFC 8601): ours on
 * top, and any that arrived claiming our authserv-id removed (section 5: such
 * a header cannot be trusted, whoever wrote it).
 */
import type { StoredHead } from '../core/auth.ts';

const CR = 13;
const LF = 10;

/** The end of the line that starts at `at` (after its LF), or -1 when `bytes` ends first. */
function lineEnd(bytes: Buffer, at: number): number {
  const lf = bytes.indexOf(LF, at);
  return lf < 0 ? -1 : lf + 1;
}

/** The authserv-id of an Authentication-Results value: after any comments, a token or a quoted string. */
export function authservId(value: string): string {
  let v = value.replace(/\r?\n/g, '');
  for (let i = 0; i < 4 && /\([^()]*\)/.test(v); i++) v = v.replace(/\([^()]*\)/g, ' ');
  const m = /^\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;]+))/.exec(v);
  return (m?.[1]?.replace(/\\(.)/g, '$1') ?? m?.[2] ?? '').toLowerCase();
}

/**
 * Byte ranges [start, end) of the `Authentication-Results:` fields with
 * authserv-id `ourId` in the header section at the start of `bytes` (only
 * fields complete within `bytes`), in order.
 */
export function forgedRanges(bytes: Buffer, ourId: string): Array<[number, number]> {
  const id = ourId.toLowerCase();
  const out: Array<[number, number]> = [];
  let at = 0;
  while (at < bytes.length) {
    // an empty line ends the header section
    if (bytes[at] === LF || (bytes[at] === CR && bytes[at + 1] === LF)) break;
    let end = lineEnd(bytes, at);
    if (end < 0) break;
    // folded continuation lines belong to the field
    while (end < bytes.length && (bytes[end] === 0x20 || bytes[end] === 0x09)) {
      const next = lineEnd(bytes, end);
      if (next < 0) return out;
      end = next;
    }
    const colon = bytes.indexOf(0x3a, at);
    if (colon > at && colon < end) {
      const name = bytes.toString('latin1', at, colon).trim().toLowerCase();
      if (name === 'authentication-results' && authservId(bytes.toString('latin1', colon + 1, end)) === id) out.push([at, end]);
    }
    at = end;
  }
  return out;
}

/** Our header on top; the forged ones (ranges in `stored`, the top of the stored bytes) left out. */
export function headOf(header: string, stored: Buffer, forged: Array<[number, number]>): StoredHead {
  const parts: Buffer[] = [Buffer.from(header, 'utf8')];
  let at = 0;
  for (const [start, end] of forged) {
    parts.push(stored.subarray(at, start));
    at = end;
  }
  return { bytes: Buffer.concat(parts), cut: at };
}
