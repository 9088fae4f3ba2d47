/**
 * SMTPStream.prototype._feedDataStream of smtp-server 3.21.6 (MIT, Andris
 * Reinman), copied from dist/esm/smtp-stream.js with one change, marked
 * "smtp-receive": the end of DATA is looked for with indexOf from one "\n." to
 * the next instead of a test of every byte — the same positions i
 * (2 <= i < len - 2), in the same order, so the same results. Installed by
 * ./smtp-server.ts, which first checks that the method it replaces is exactly
 * the one this was copied from. Upstream's comments are shortened.
 */

// the sequence that ends the DATA payload
const END_SEQUENCE = Buffer.from('\r\n.\r\n');
const LF_DOT = Buffer.from('\n.'); // smtp-receive

// `this` is an SMTPStream; its fields are internal to smtp-server, hence any (the code is upstream's)
export function feedDataStream(this: any, chunk: Buffer, done: () => void): void {
  // only called in data mode, which always has a stream
  const dataStream = this._dataStream;
  let i;
  let len;
  let handled;
  let buf;
  if (this._lastBytes && this._lastBytes.length) {
    chunk = Buffer.concat([this._lastBytes, chunk], this._lastBytes.length + chunk.length);
    this._lastBytes = false;
  }
  len = chunk.length;
  // Check if the data does not start with the end terminator (see upstream: _atDataStart, not
  // dataBytes, or a dot-stuffed first line split across chunks would end DATA early)
  if (this._atDataStart && len >= 3 && Buffer.compare(chunk.subarray(0, 3), Buffer.from('.\r\n')) === 0) {
    this._endDataMode(false, chunk.subarray(3), done);
    return;
  }
  // check if the first symbol is a escape dot
  if (this._atDataStart && len >= 2 && chunk[0] === 0x2e && chunk[1] === 0x2e) {
    chunk = chunk.subarray(1);
    len--;
    // the escape dot is consumed payload, so the leading dot from now on is
    // content and never a terminator
    this._atDataStart = false;
  }
  // seek for the stream ending
  // smtp-receive: jump from one "\n." to the next with indexOf instead of
  // testing every byte (the same positions i, 2 <= i < len - 2, in the same order)
  for (let lf = chunk.indexOf(LF_DOT, 1); lf !== -1 && lf + 1 < len - 2; lf = chunk.indexOf(LF_DOT, lf + 1)) {
    i = lf + 1;
    // if the dot is the first char in a line
    if (chunk[i] === 0x2e && chunk[i - 1] === 0x0a) {
      // if the dot matches end terminator
      if (Buffer.compare(chunk.subarray(i - 2, i + 3), END_SEQUENCE) === 0) {
        // everything before the terminator is message content, including the CRLF that
        // ends the last line (i is at least 2, so that CRLF is always emitted)
        buf = chunk.subarray(0, i);
        this._countDataBytes(buf.length);
        this._endDataMode(buf, chunk.subarray(i + 3), done);
        return;
      }
      // check if the dot is an escape char and remove it
      if (chunk[i + 1] === 0x2e) {
        buf = chunk.subarray(0, i);
        this._lastBytes = false; // clear remainder bytes
        this._countDataBytes(buf.length); // increment byte counter
        // emit what we already have and continue without the dot
        if (dataStream.writable) {
          dataStream.write(buf);
        }
        const rest = chunk.subarray(i + 1);
        setImmediate(() => this._feedDataStream(rest, done));
        return;
      }
    }
  }
  // keep the last bytes
  if (chunk.length < 4) {
    this._lastBytes = chunk;
  } else {
    this._lastBytes = chunk.subarray(chunk.length - 4);
  }
  // if current chunk is longer than the remainder bytes we keep for later emit the available bytes
  if (this._lastBytes.length < chunk.length) {
    buf = chunk.subarray(0, chunk.length - this._lastBytes.length);
    this._countDataBytes(buf.length);
    // write to stream but stop if need to wait for drain
    if (dataStream.writable) {
      handled = dataStream.write(buf);
      if (!handled && !dataStream.destroyed) {
        // a stream that the application destroys never drains, it only closes
        const onDrain = (): void => {
          dataStream.removeListener('drain', onDrain);
          dataStream.removeListener('close', onDrain);
          done();
        };
        dataStream.once('drain', onDrain);
        dataStream.once('close', onDrain);
      } else {
        return done();
      }
    } else {
      return done();
    }
  } else {
    // nothing to emit, continue with the input stream
    return done();
  }
}
