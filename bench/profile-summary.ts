/**
 * Where a thread's time goes: summarises a V8 .cpuprofile (from
 * `node --cpu-prof`, which writes one per thread: the main thread's and each
 * worker's) into categories and the top functions, per message. A Piscina
 * worker's wait for its next task (Atomics.wait) counts as idle.
 *
 *   node --import tsx bench/profile-summary.ts PROFILE.cpuprofile [--messages N] [--top 20]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Categories, first match wins; a native frame is charged to its JavaScript caller's category when it has one. */
const CATEGORIES: Array<[string, (url: string, fn: string) => boolean]> = [
  ['socket writes (one syscall per SMTP reply)', (_u, fn) => fn === 'writeUtf8String'],
  ['spool-file writes (large messages)', (_u, fn) => fn === 'writeBuffer' || fn === 'writeBuffers'],
  ['garbage collection', (_u, fn) => fn === '(garbage collector)'],
  ['smtp-server (SMTP parsing and state)', (u) => u.includes('node_modules/smtp-server/')],
  ['LMDB commit path (lmdb-js, msgpackr, ordered-binary)', (u) => /node_modules\/(lmdb|msgpackr|ordered-binary)\//.test(u)],
  ['smtp-receive (hooks, DATA sink, trace header, record)', (u) => /\/(dist|src)\/(main|core|workers)\//.test(u)],
  ['Node sockets and streams', (u) => /^node:(net|internal\/(streams|stream_base_commons|net))/.test(u)],
  ['Node events, timers, promises', (u) => /^node:(events|internal\/(timers|process|async_hooks))/.test(u) || u === ''],
  ['other', () => true],
];

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { messages: { type: 'string' }, top: { type: 'string', default: '20' } },
  });
  if (positionals.length !== 1) throw new Error('usage: profile-summary.ts PROFILE.cpuprofile [--messages N] [--top 20]');
  const p = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  p.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));

  const category = (id: number): string => {
    const n = byId.get(id)!;
    const { url, functionName } = n.callFrame;
    if (functionName === '(idle)' || functionName === '(program)') return functionName;
    // a Piscina worker waiting for its next task sleeps in Atomics.wait inside this function: not busy
    if (functionName === 'atomicsWaitLoop' && url.includes('piscina')) return '(idle)';
    // a native frame (no url) counts where its nearest JavaScript caller does, unless it has its own category
    let u = url;
    for (let cur = parent.get(id); !u && cur !== undefined; cur = parent.get(cur)) u = byId.get(cur)!.callFrame.url;
    return CATEGORIES.find(([, test]) => test(url ? u : '', functionName) || (!url && test(u, functionName)))![0];
  };

  const cats = new Map<string, number>();
  const fns = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const c = category(id);
    if (c === '(idle)' || c === '(program)') continue;
    busy += us;
    cats.set(c, (cats.get(c) ?? 0) + us);
    const f = byId.get(id)!.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/.*node_modules\//, '').replace(/.*\/(dist|src)\//, '$1/')}:${f.lineNumber + 1}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const n = values.messages ? Number(values.messages) : undefined;
  const per = (us: number): string => (n ? `${(us / n).toFixed(1).padStart(7)} µs/msg` : '');
  const pct = (us: number): string => `${((100 * us) / busy).toFixed(1).padStart(5)} %`;
  console.log(`${p.nodes.some((x) => x.callFrame.functionName === 'atomicsWaitLoop') ? 'worker thread' : 'main thread'} busy: ${(busy / 1000).toFixed(0)} ms${n ? ` for ${n} messages = ${(busy / n / 1000).toFixed(3)} ms per message` : ''}\n`);
  console.log('| where | share | per message |\n|---|---:|---:|');
  for (const [c, us] of [...cats].sort((a, b) => b[1] - a[1])) console.log(`| ${c} | ${pct(us).trim()} | ${per(us).trim()} |`);
  console.log(`\ntop ${values.top} functions (self time):`);
  for (const [k, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`${pct(us)} ${per(us)}  ${k}`);
}

main();
