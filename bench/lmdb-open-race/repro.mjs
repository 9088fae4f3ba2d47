// lmdb-js 3.5.6: processes that merely OPEN an environment (read-only, never writing) make
// another process's committed transactions vanish. See README.md in this folder. From the repo root:
//   node bench/lmdb-open-race/repro.mjs [--openers 4] [--seconds 20] [--dir DIR] [--opener-rw]
// One writer process commits one key per put (awaited, overlappingSync off); N opener processes
// open + read + close the environment in a loop. Afterwards a fresh process checks that every key
// whose put resolved is present. Prints one JSON line; exit 0 clean, 1 loss/corruption/crash/hang, 2 usage.
// Not part of `npm test`: the writer can abort or segfault (that is the bug).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const self = fileURLToPath(import.meta.url);
let args;
try {
  args = parseArgs({ options: {
    openers: { type: 'string', default: '4' }, seconds: { type: 'string', default: '20' },
    dir: { type: 'string' }, 'opener-rw': { type: 'boolean', default: false },
    role: { type: 'string', default: 'main' }, until: { type: 'string' }, // internal (child processes)
  } }).values;
} catch (e) { console.error(String(e.message)); process.exit(2); }
// lmdb as installed in the project this file lives in (bench/lmdb-open-race/ -> repo root)
const loadLmdb = async () =>
  import(pathToFileURL(createRequire(new URL('../../package.json', import.meta.url)).resolve('lmdb')).href);
// the options smtp-receive's store uses that matter here
const envOpts = (dir) => ({ path: dir, maxDbs: 8, separateFlushed: true, overlappingSync: false });
const errText = async (e) => String((await e?.commitError?.catch?.((x) => x)) ?? e).slice(0, 300);

if (args.role === 'writer') {
  const { open } = await loadLmdb();
  const env = open(envOpts(args.dir));
  const db = env.openDB({ name: 'd' });
  await db.put(-1, 'init');
  process.send({ ready: true });
  const until = Number(args.until);
  let next = 0, batch = [], failure = null;
  const flush = () => { if (batch.length) process.send({ committed: batch }); batch = []; };
  const timer = setInterval(flush, 50); // acknowledged keys reach the parent even if we crash later
  // 4 concurrent committers (like concurrent SMTP sessions), each awaiting its own commit
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (Date.now() < until && !failure) {
      const k = next++;
      try { await db.put(k, k); batch.push(k); } catch (e) { failure ??= await errText(e); }
    }
  }));
  clearInterval(timer);
  flush();
  try { await env.close(); } catch (e) { failure ??= 'close: ' + (await errText(e)); }
  process.send({ done: true, failure }, () => process.exit(0));
} else if (args.role === 'opener') {
  let opens = 0, error = null, stop = false;
  process.on('SIGTERM', () => { stop = true; }); // the parent's "writer is gone, stop now"
  const { open } = await loadLmdb();
  const until = Number(args.until);
  try {
    while (Date.now() < until && !stop) {
      const env = open({ ...envOpts(args.dir), readOnly: !args['opener-rw'] });
      env.openDB({ name: 'd' }).get(0);
      await env.close();
      opens++;
      await new Promise(setImmediate); // let the SIGTERM handler run (close() resolves without I/O)
    }
  } catch (e) { error = await errText(e); }
  console.log(JSON.stringify({ opens, error }));
} else if (args.role === 'check') {
  const { open } = await loadLmdb();
  process.once('message', async (keys) => {
    const env = open(envOpts(args.dir));
    const db = env.openDB({ name: 'd' });
    const missing = keys.filter((k) => db.get(k) !== k);
    await env.close();
    process.send({ missing }, () => process.exit(0));
  });
} else {
  const openers = Number(args.openers), seconds = Number(args.seconds);
  if (!(Number.isInteger(openers) && openers >= 0 && seconds > 0)) { console.error('bad --openers/--seconds'); process.exit(2); }
  const dir = args.dir ?? mkdtempSync(join(tmpdir(), 'lmdb-open-race-'));
  mkdirSync(dir, { recursive: true });
  const kids = new Set();
  const child = (role, extra = [], ipc = false) => {
    const c = spawn(process.execPath, [self, '--role', role, '--dir', dir, ...extra],
      { stdio: ['ignore', 'pipe', 'pipe', ...(ipc ? ['ipc'] : [])] });
    kids.add(c);
    c.out = ''; c.err = '';
    c.stdout.on('data', (d) => { c.out += d; });
    c.stderr.on('data', (d) => { c.err += d; process.stderr.write(`[${role} ${c.pid}] ${d}`); });
    c.exited = new Promise((res) => c.on('close', (code, sig) => { kids.delete(c); res(sig ?? code); }));
    return c;
  };
  const failures = [];
  const hard = setTimeout(() => { // bound the whole run even if something hangs
    failures.push(`timeout after ${seconds + 60} s`);
    for (const c of kids) c.kill('SIGKILL'); // only our own children, by their pid
  }, (seconds + 60) * 1000);
  const until = String(Date.now() + seconds * 1000);
  const committed = [];
  let writerFailure = null;
  const writer = child('writer', ['--until', until], true);
  const ready = new Promise((res) => { writer.on('message', (m) => { if (m.ready) res(true); }); writer.exited.then(() => res(false)); });
  writer.on('message', (m) => {
    if (m.committed) for (const k of m.committed) committed.push(k);
    if (m.done) writerFailure = m.failure;
  });
  const openerRuns = (await ready)
    ? Array.from({ length: openers }, () => child('opener', ['--until', until, ...(args['opener-rw'] ? ['--opener-rw'] : [])]))
    : [];
  const wExit = await writer.exited;
  for (const o of openerRuns) o.kill('SIGTERM'); // nothing left to race with (no-op if already gone)
  if (writerFailure) failures.push(`writer: ${writerFailure}`);
  if (wExit !== 0) failures.push(`writer exited with ${wExit}: ${writer.err.trim().split('\n').slice(-3).join(' | ').slice(0, 300)}`);
  const openerResults = [];
  for (const o of openerRuns) {
    const x = await o.exited;
    let r;
    try { r = JSON.parse(o.out.trim().split('\n').pop()); } catch { r = { opens: null, error: null }; }
    if (x !== 0) r.error = (r.error ? r.error + ' | ' : '') + `exited with ${x}`;
    if (r.error) failures.push(`opener ${o.pid}: ${r.error}`);
    openerResults.push(r.opens);
  }
  // a fresh process checks every key whose put resolved
  let missing = [];
  if (!failures.some((f) => f.startsWith('timeout'))) {
    const checker = child('check', [], true);
    const got = new Promise((res) => { checker.on('message', (m) => res(m.missing)); checker.exited.then(() => res(null)); });
    checker.send(committed);
    missing = await got;
    const cExit = await checker.exited;
    if (missing === null || cExit !== 0) {
      failures.push(`check exited with ${cExit}: ${checker.err.trim().split('\n').slice(-2).join(' | ').slice(0, 300)}`);
      missing = missing ?? [];
    }
  }
  clearTimeout(hard);
  if (!args.dir) rmSync(dir, { recursive: true, force: true });
  const bad = missing.length > 0 || failures.length > 0;
  console.log(JSON.stringify({
    ok: !bad, openers, seconds, openerRw: args['opener-rw'], committed: committed.length,
    missing: missing.length, firstMissing: missing.slice(0, 10), failure: failures.join(' || ') || null,
    openerOpens: openerResults, dir: args.dir ?? null,
  }));
  process.exitCode = bad ? 1 : 0;
}
