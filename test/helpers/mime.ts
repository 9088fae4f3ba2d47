/** Just enough MIME reading to check what a real client sent: headers, encoded words, multipart parts. */

export interface Part {
  /** Header names in lower case, values unfolded. */
  headers: Map<string, string>;
  body: string;
}

/** Splits a message (CRLF line ends) into unfolded headers and body. */
export function parsePart(text: string): Part {
  const end = text.indexOf('\r\n\r\n');
  const head = end < 0 ? text : text.slice(0, end);
  const headers = new Map<string, string>();
  for (const field of head.replace(/\r\n(?=[ \t])/g, '').split('\r\n')) {
    const colon = field.indexOf(':');
    if (colon > 0) headers.set(field.slice(0, colon).trim().toLowerCase(), field.slice(colon + 1).trim());
  }
  return { headers, body: end < 0 ? '' : text.slice(end + 4) };
}

/** Decodes RFC 2047 encoded words (B and Q, UTF-8); the whitespace between two encoded words is dropped. */
export function decodeWords(value: string): string {
  return value
    .replace(/(=\?[^?]+\?[BbQq]\?[^?]*\?=)\s+(?==\?)/g, '$1')
    .replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g, (_m, charset: string, enc: string, data: string) => {
      if (!/^utf-?8$/i.test(charset)) throw new Error(`unexpected charset ${charset}`);
      const bytes = enc.toUpperCase() === 'B'
        ? Buffer.from(data, 'base64')
        : Buffer.from(data.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
      return bytes.toString('utf8');
    });
}

/** The parts of a multipart body (boundary from the Content-Type header). */
export function multipartParts(part: Part): Part[] {
  const type = part.headers.get('content-type') ?? '';
  const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
  if (!/^multipart\//i.test(type) || !boundary) throw new Error(`not multipart: ${type}`);
  const pieces = part.body.split(`--${boundary}`);
  // pieces[0] is the preamble; the last piece starts with "--" (the closing delimiter)
  return pieces.slice(1, -1).map((p) => parsePart(p.replace(/^\r\n/, '').replace(/\r\n$/, '')));
}
