/** The bench scenarios: what load, against what, in how many steps. */
import { join } from 'node:path';
import type { LoadOptions, LoadResult } from './loadgen.ts';
import { BENCH } from './targets.ts';

export type StepLoad = Pick<LoadOptions, 'sessions' | 'messages' | 'size' | 'rcpts' | 'pipelining' | 'perConnection'>
  & { probeIntervalMs?: number };

export interface Step {
  label: string;
  load: StepLoad;
}

export interface Scenario {
  name: string;
  description: string;
  steps(quick: boolean): Step[];
  /** Time limit of one run of one step, ms. */
  runTimeoutMs: number;
  /** smtp-receive runs this receiver module. */
  receiver?: string;
  /** Run a short unrecorded warm-up per step and target first (JIT, process pools). @default true */
  warmup?: boolean;
  /** Comparison with other servers makes sense (same load, interleaved). */
  comparable: boolean;
  /** Problems that make the run fail (exit 1), e.g. for the CI smoke run. */
  check?(results: Array<{ step: string; result: LoadResult }>): string[];
  /** Not available yet: the message printed instead of running. */
  unavailable?: string;
  /** A scenario that is its own script in bench/ (run with the --built/--quick flags passed on). */
  script?: { file: string; quickArgs: string[] };
}

const KiB = 1024;
const MiB = 1024 * KiB;
const base = { size: 4 * KiB, rcpts: 1, pipelining: false, perConnection: 1 };

/** Enough messages for a run of a few seconds at each concurrency (--quick: about a second). */
const SMALL_MESSAGES: Record<number, [quick: number, full: number]> = { 1: [300, 2000], 16: [1000, 5000], 64: [2000, 10000], 256: [3000, 20000] };

function small(sessions: number, quick: boolean): Step {
  const [q, full] = SMALL_MESSAGES[sessions] ?? [1000, 5000];
  const messages = quick ? q : full;
  return { label: `4KiB x${sessions}`, load: { ...base, sessions, messages } };
}

export const SCENARIOS: Record<string, Scenario> = {
  small: {
    name: 'small',
    description: '4 KiB messages, one per connection, at 1 / 16 / 64 / 256 sessions',
    steps: (quick) => [1, 16, 64, 256].map((s) => small(s, quick)),
    runTimeoutMs: 180_000,
    comparable: true,
  },
  sizes: {
    name: 'sizes',
    description: '100 KiB messages at 16 sessions and 10 MiB messages at 8 sessions',
    steps: (quick) => [
      { label: '100KiB x16', load: { ...base, size: 100 * KiB, sessions: 16, messages: quick ? 300 : 2000 } },
      { label: '10MiB x8', load: { ...base, size: 10 * MiB, sessions: 8, messages: quick ? 16 : 100 } },
    ],
    runTimeoutMs: 300_000,
    comparable: true,
  },
  rcpts: {
    name: 'rcpts',
    description: '4 KiB messages with 50 recipients each, 16 sessions',
    steps: (quick) => [{ label: '50 rcpts x16', load: { ...base, rcpts: 50, sessions: 16, messages: quick ? 300 : 2000 } }],
    runTimeoutMs: 180_000,
    comparable: true,
  },
  reuse: {
    name: 'reuse',
    description: '4 KiB messages, 100 per connection: 1 and 16 sessions, and 16 with pipelining',
    steps: (quick) => [
      { label: 'reuse x1', load: { ...base, perConnection: 100, sessions: 1, messages: quick ? 500 : 3000 } },
      { label: 'reuse x16', load: { ...base, perConnection: 100, sessions: 16, messages: quick ? 2000 : 10000 } },
      { label: 'reuse+pipe x16', load: { ...base, perConnection: 100, pipelining: true, sessions: 16, messages: quick ? 2000 : 10000 } },
    ],
    runTimeoutMs: 180_000,
    comparable: true,
  },
  memory: {
    name: 'memory',
    description: '500 concurrent sessions, each sending one 10 MiB message: peak RSS',
    steps: (quick) => {
      const n = quick ? 100 : 500;
      return [{ label: `10MiB x${n} at once`, load: { ...base, size: 10 * MiB, sessions: n, messages: n } }];
    },
    runTimeoutMs: 600_000,
    warmup: false,
    comparable: true,
  },
  'cpu-predeliver': {
    name: 'cpu-predeliver',
    description: 'predeliver burns ~20 ms CPU per message (bench/fixtures/cpu-predeliver.ts); '
      + 'time to greeting of fresh connections every 50 ms while it runs',
    steps: (quick) => [{ label: 'predeliver 20ms x16', load: { ...base, sessions: 16, messages: quick ? 200 : 1000, probeIntervalMs: 50 } }],
    runTimeoutMs: 180_000,
    receiver: join(BENCH, 'fixtures', 'cpu-predeliver.ts'),
    comparable: false,
    // TODO: report the server's own event-loop lag (p99) from /metrics once the server exposes it;
    // until then the time to greeting of fresh connections stands in for it.
  },
  smoke: {
    name: 'smoke',
    description: 'a few hundred messages in a few seconds, every reply checked (CI)',
    steps: () => [
      { label: 'smoke x8', load: { ...base, sessions: 8, messages: 200 } },
      { label: 'smoke reuse+pipe', load: { ...base, rcpts: 3, pipelining: true, perConnection: 25, sessions: 4, messages: 100 } },
      { label: 'smoke 200KiB', load: { ...base, size: 200 * KiB, sessions: 4, messages: 20 } },
    ],
    runTimeoutMs: 60_000,
    warmup: false,
    comparable: true,
    check: (results) => results.flatMap(({ step, result }) => [
      ...(result.failed || Object.keys(result.errors).length ? [`${step}: ${result.failed} failed, errors ${JSON.stringify(result.errors)}`] : []),
      ...(result.accepted === 0 ? [`${step}: nothing accepted`] : []),
    ]),
  },
  delivery: {
    name: 'delivery',
    description: 'delivery throughput: a queue of 100,000 messages drained by `runqueue` with a trivial deliver()',
    steps: () => [],
    runTimeoutMs: 0,
    comparable: false,
    script: { file: 'delivery.ts', quickArgs: ['--size', '10000'] },
  },
  'queue-1m': {
    name: 'queue-1m',
    description: 'a queue of 1,000,000 messages: SMTP enqueue rate at the end vs the start, showqueue --json time '
      + '(runner look-up time and memory at 10k/100k/1M: bench/queue-scale.ts)',
    steps: () => [],
    runTimeoutMs: 0,
    comparable: false,
    script: { file: 'queue-1m.ts', quickArgs: ['--size', '100000', '--messages', '2000'] },
  },
  soak: {
    name: 'soak',
    description: 'nothing lost: receive + deliver + queue tools at once for 10 minutes, serve SIGKILLed every ~20 s; '
      + 'every 250\'d message must be delivered intact',
    steps: () => [],
    runTimeoutMs: 0,
    comparable: false,
    script: { file: 'soak.ts', quickArgs: ['--minutes', '1'] },
  },
};
