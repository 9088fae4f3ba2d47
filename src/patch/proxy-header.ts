/**
 * The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2)
 * at the start of a connection from a load balancer: where it ends, and the
 * client's address it carries. proxy-protocol-js parses both versions; this
 * module finds the header's end in bytes that may arrive in several packets,
 * turns the parsed addresses into text and checks what the parser leaves
 * unchecked (v1 addresses are IP addresses of the family named, ports fit 16
 * bits). Pure functions, no sockets.
 */
import { isIP } from 'node:net';
import * as pp from 'proxy-protocol-js';

/**
 * v2's 12-byte signature (proxy-protocol.txt, 2.2; the parser checks it again): it starts with CRLF, so an
 * SMTP server without PROXY support reads empty lines, then QUIT. Here it tells the versions apart early.
 */
const V2_SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');
/** v2: signature, version/command, family/transport, 16-bit length. */
const V2_FIXED = 16;
const V1_PREFIX = Buffer.from('PROXY ');
/** v1: the longest header line, CRLF included (proxy-protocol.txt, 2.1). */
export const V1_MAX = 107;

export interface ProxyPeer {
  address: string;
  port: number;
}

export type ProxyHeader =
  /** Not all of it has arrived yet. */
  | { state: 'more' }
  /** Not a (valid) PROXY header; `reason` is for the log. */
  | { state: 'bad'; reason: string }
  /**
   * A whole header of `length` bytes. Without `source` (v2 LOCAL, v1 UNKNOWN,
   * an unspecified or Unix address) the connection's own addresses stand.
   */
  | { state: 'done'; version: 1 | 2; length: number; source?: ProxyPeer; destination?: ProxyPeer };

/** Whether `bytes` is a prefix of `whole` (or `whole` is a prefix of `bytes`). */
function startsLike(bytes: Buffer, whole: Buffer): boolean {
  const n = Math.min(bytes.length, whole.length);
  return bytes.subarray(0, n).equals(whole.subarray(0, n));
}

/** Whether a connection's first bytes look like a PROXY header of either version (for peers not allowed to send one). */
export function looksLikeProxyHeader(first: Buffer): boolean {
  return first.length > 0 && (startsLike(first, V1_PREFIX) || startsLike(first, V2_SIGNATURE));
}

/** Reads the header at the start of `buf` (all bytes received so far). */
export function parseProxyHeader(buf: Buffer): ProxyHeader {
  if (buf.length === 0) return { state: 'more' };
  if (startsLike(buf, V2_SIGNATURE)) return parseV2(buf);
  if (startsLike(buf, V1_PREFIX)) return parseV1(buf);
  return { state: 'bad', reason: 'the connection does not start with a PROXY header' };
}

function parseV1(buf: Buffer): ProxyHeader {
  const end = buf.subarray(0, V1_MAX).indexOf('\r\n');
  if (end < 0) {
    return buf.length >= V1_MAX ? { state: 'bad', reason: `v1 header line longer than ${V1_MAX} bytes` } : { state: 'more' };
  }
  const length = end + 2;
  const line = buf.subarray(0, length).toString('latin1');
  // UNKNOWN: the balancer could not tell (or it is its own health check); anything after it is ignored
  if (/^PROXY UNKNOWN[ \r]/.test(line)) return { state: 'done', version: 1, length };
  let parsed: pp.V1ProxyProtocol;
  try {
    parsed = pp.V1ProxyProtocol.parse(line);
  } catch {
    return { state: 'bad', reason: `malformed v1 header ${JSON.stringify(line.slice(0, -2))}` };
  }
  const family = parsed.inetProtocol === pp.INETProtocol.TCP4 ? 4 : 6;
  const peers = [parsed.source, parsed.destination].map((p) => ({ address: p.ipAddress, port: p.port }));
  for (const p of peers) {
    if (isIP(p.address) !== family || !(p.port >= 0 && p.port <= 65535)) {
      return { state: 'bad', reason: `malformed v1 header ${JSON.stringify(line.slice(0, -2))}` };
    }
  }
  return { state: 'done', version: 1, length, source: peers[0], destination: peers[1] };
}

function parseV2(buf: Buffer): ProxyHeader {
  if (buf.length < V2_FIXED) return { state: 'more' };
  const length = V2_FIXED + buf.readUInt16BE(14);
  if (buf.length < length) return { state: 'more' };
  let parsed: pp.V2ProxyProtocol;
  try {
    parsed = pp.V2ProxyProtocol.parse(new Uint8Array(buf.buffer, buf.byteOffset, length));
  } catch (err) {
    return { state: 'bad', reason: `malformed v2 header: ${(err as { message?: string }).message}` };
  }
  // LOCAL: the balancer's own connection (a health check); UNSPEC and Unix addresses say nothing about a TCP client
  if (parsed.command === pp.Command.LOCAL) return { state: 'done', version: 2, length };
  const a = parsed.proxyAddress;
  if (a instanceof pp.IPv4ProxyAddress) {
    return {
      state: 'done', version: 2, length,
      source: { address: a.sourceAddress.address.join('.'), port: a.sourcePort },
      destination: { address: a.destinationAddress.address.join('.'), port: a.destinationPort },
    };
  }
  if (a instanceof pp.IPv6ProxyAddress) {
    return {
      state: 'done', version: 2, length,
      source: { address: ipv6Text(a.sourceAddress.address), port: a.sourcePort },
      destination: { address: ipv6Text(a.destinationAddress.address), port: a.destinationPort },
    };
  }
  return { state: 'done', version: 2, length };
}

/** 16 bytes as IPv6 text (uncompressed; smtp-server normalizes it), an IPv4-mapped address as dotted IPv4. */
function ipv6Text(bytes: readonly number[]): string {
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return bytes.slice(12).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}
