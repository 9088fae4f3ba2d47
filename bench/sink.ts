/**
 * The bare smtp-server sink: the ceiling for this stack. The project's patched
 * smtp-server (earlyTalkerDelay 0: greet at once), each message streamed to its
 * own file and fsync'ed before the 250 (`--nofsync`: not). No LMDB, no hooks,
 * no directory fsync.
 *
 *   node --import tsx bench/sink.ts --port PORT --dir DIR [--nofsync]
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import '../src/patch/smtp-server.ts'; // the same run-time patch as the daemon's

const { values: v } = parseArgs({
  options: {
    port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' },
    dir: { type: 'string' }, nofsync: { type: 'boolean', default: false },
  },
});
if (!v.dir) throw new Error('usage: sink.ts --port PORT --dir DIR [--nofsync]');
const dir = v.dir;

let n = 0;
const options: SMTPServerOptions & { earlyTalkerDelay: number } = {
  banner: 'bench sink',
  logger: false,
  disabledCommands: ['AUTH', 'STARTTLS'],
  hideSTARTTLS: true,
  disableReverseLookup: true,
  size: 20_000_000,
  maxClients: 1000,
  earlyTalkerDelay: 0,
  onData(stream: Readable, _session, done) {
    const id = ++n;
    const file = createWriteStream(join(dir, `${id}.eml`), { flush: !v.nofsync });
    let failed: Error | undefined;
    file.on('error', (err) => {
      failed ??= err;
      stream.resume(); // drain, answer at the end
    });
    file.on('close', () => (failed ? done(failed) : done(null, `Ok: queued as ${id}`)));
    stream.pipe(file);
  },
};
const server = new SMTPServer(options);
server.on('error', (err) => process.stderr.write(`sink: ${err.message}\n`));
server.listen(Number(v.port), v.host, () => {
  const address = server.server.address();
  process.stdout.write(`sink: listening on ${JSON.stringify(address)}\n`);
});
const stop = (): void => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
