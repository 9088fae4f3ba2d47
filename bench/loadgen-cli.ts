/**
 * The load generator as a command, for any server on 127.0.0.1:
 *   node --import tsx bench/loadgen-cli.ts --port 2525 --sessions 16 --messages 1000 [--server-pid PID]
 * Prints the result as JSON; exits 1 when a message was not accepted.
 */
import { parseArgs } from 'node:util';
import { runLoad } from './loadgen.ts';

async function cli(argv: string[]): Promise<void> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string' },
      sessions: { type: 'string', default: '16' }, messages: { type: 'string', default: '1000' },
      size: { type: 'string', default: '4096' }, rcpts: { type: 'string', default: '1' },
      pipelining: { type: 'boolean', default: false }, 'per-conn': { type: 'string', default: '1' },
      domain: { type: 'string', default: 'localhost' }, timeout: { type: 'string', default: '120' },
      'server-pid': { type: 'string' }, tree: { type: 'boolean', default: false }, probe: { type: 'string' },
    },
  });
  if (!v.port) throw new Error('usage: loadgen-cli.ts --port PORT [--host H] [--sessions N] [--messages M] [--size BYTES] '
    + '[--rcpts R] [--pipelining] [--per-conn K] [--domain D] [--timeout S] [--server-pid PID [--tree]] [--probe MS]');
  if (v.host !== '127.0.0.1' && v.host !== 'localhost') throw new Error('the bench only sends to 127.0.0.1');
  const result = await runLoad({
    host: v.host, port: Number(v.port), sessions: Number(v.sessions), messages: Number(v.messages),
    size: Number(v.size), rcpts: Number(v.rcpts), pipelining: v.pipelining, perConnection: Number(v['per-conn']),
    rcptDomain: v.domain, timeoutMs: Number(v.timeout) * 1000,
    serverPid: v['server-pid'] ? Number(v['server-pid']) : undefined, serverTree: v.tree,
    probeIntervalMs: v.probe ? Number(v.probe) : undefined,
  });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  process.exitCode = result.failed ? 1 : 0;
}

cli(process.argv.slice(2)).catch((err: Error) => {
  process.stderr.write(`loadgen: ${err.message}\n`);
  process.exitCode = 2;
});
