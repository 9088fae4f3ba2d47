// What a per-task time limit costs the pool (src/main/pool.ts): AbortSignal.timeout() per task, as the pool
// did, against a timer cleared when the task ends (what it does now). 200,000 limits of 300 s (deliverTimeout's
// default), each with one abort listener, as Piscina adds; then a full GC and the heap still held.
//   node --expose-gc bench/task-deadline.mjs timeout
//   node --expose-gc bench/task-deadline.mjs cleared
const N = 200_000;
const mode = process.argv[2];
if (mode !== 'timeout' && mode !== 'cleared') {
  console.error('usage: node --expose-gc bench/task-deadline.mjs timeout|cleared');
  process.exit(2);
}
const t0 = process.hrtime.bigint();
for (let i = 0; i < N; i++) {
  if (mode === 'timeout') {
    AbortSignal.timeout(300_000).addEventListener('abort', () => {}, { once: true });
  } else {
    const listener = { fn: () => {} };
    const timer = setTimeout(() => listener.fn(), 300_000);
    clearTimeout(timer); // the task ended
  }
}
const t1 = process.hrtime.bigint();
globalThis.gc?.();
const mb = (n) => Math.round(n / 1e6);
console.log(`${mode}: ${(Number(t1 - t0) / N / 1000).toFixed(2)} µs per task, heap held after GC ${mb(process.memoryUsage().heapUsed)} MB, RSS ${mb(process.memoryUsage().rss)} MB`);
process.exit(0);
