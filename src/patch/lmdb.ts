/**
 * lmdb-js 3.5.6, patched at run time (imported by the package entry and the
 * server, before any queue store opens).
 *
 * The bug: lmdb-js starts each event-turn write batch with an internal write
 * whose promise nobody holds (write.js: `if (writeBatchStart)
 * writeBatchStart()` in the batch's setImmediate task). When that commit fails
 * (disk full, I/O error) the promise rejects unhandled, and Node ends the
 * process — while the application's own writes of that transaction are
 * rejected, and handled, as they should be.
 *
 * The fix, through lmdb-js's public surface (the code is in a closure, out of
 * reach of any prototype): every store registers itself in the exported
 * `allDbs` map as it is constructed; a hook on that map's `set` adds, once per
 * write queue, a documented `beforecommit` listener. lmdb-js calls those
 * listeners at the start of that same batch task; the listener queues a
 * microtask, which runs as soon as the task has returned — after the
 * batch-start write made its promise the store's current commit promise, and
 * before anything else can replace it or the commit can fail — and gives that
 * promise a handler through the documented `store.committed` thenable. Only the
 * unhandled-rejection exit changes: the application's promises reject as before.
 *
 * Before hooking anything it checks the installed version and fingerprints of
 * the two files whose code this relies on (write.js, open.js); anything else
 * throws a PatchError at import.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as lmdb from 'lmdb';
import { PatchError, checkVersion, fingerprint, installed } from './verify.ts';

/** The only lmdb version this patch fits (package.json pins it). */
export const LMDB_VERSION = '3.5.6';
/** Fingerprints (./verify.ts) of the 3.5.6 files this patch relies on. */
const ORIGINAL_FILES = { 'write.js': '15efc3d8bb50a811', 'open.js': 'd4d02666e8c98218' } as const;
/** Set on lmdb's `allDbs` map once hooked (a second copy of smtp-receive in the process then leaves it). */
const HOOKED = Symbol.for('smtp-receive.lmdb-commit-guard');
const LMDB_PATCH = 1;

interface StoreWithWrites {
  committed?: PromiseLike<unknown>;
  on(event: 'beforecommit', listener: () => void): unknown;
}
type HookedMap = Map<unknown, unknown> & { [HOOKED]?: number };

const noop = (): void => {};
// one entry per lmdb write queue: its `committed` thenable, shared by a root store and its openDB()s
const guarded = new WeakSet<object>();

function guard(store: unknown): void {
  const committed = (store as StoreWithWrites | null)?.committed;
  // a read-only store has no write methods, hence no `committed`
  if (!committed || typeof committed.then !== 'function' || guarded.has(committed)) return;
  guarded.add(committed);
  (store as StoreWithWrites).on('beforecommit', () => {
    queueMicrotask(() => {
      committed.then(noop, noop);
    });
  });
}

export interface LmdbModule {
  dir: string;
  version: string;
  allDbs: unknown;
}

/** Hooks one loaded lmdb-js; throws a PatchError, having changed nothing, when it is not the expected code. */
export function patchLmdb(target: LmdbModule): void {
  const map = target.allDbs as HookedMap;
  if (map instanceof Map && map[HOOKED] === LMDB_PATCH) return;
  checkVersion('lmdb', target, LMDB_VERSION);
  for (const [file, expected] of Object.entries(ORIGINAL_FILES)) {
    const found = fingerprint(readFileSync(join(target.dir, file)));
    if (found !== expected) {
      throw new PatchError('lmdb', `${join(target.dir, file)} is not the code this patch was written against ` +
        `(fingerprint ${found}, expected ${expected}): the installed copy was modified`);
    }
  }
  if (!(map instanceof Map)) throw new PatchError('lmdb', 'its `allDbs` export is missing');
  for (const store of map.values()) guard(store); // stores opened before this module loaded
  const set = map.set;
  Object.defineProperty(map, 'set', {
    configurable: true,
    writable: true,
    value(this: HookedMap, key: unknown, store: unknown) {
      guard(store);
      return set.call(this, key, store);
    },
  });
  map[HOOKED] = LMDB_PATCH;
}

/**
 * Whether the lmdb-js that opens this process's stores is patched (startServer refuses to run
 * otherwise). lmdb-js loaded both with import and with require() is two copies of its JS around one
 * native addon: the first copy to open a store opens every store after it, in its own `allDbs`.
 */
export function lmdbPatched(): boolean {
  const m = lmdb as unknown as { allDbs?: HookedMap; open: unknown; nativeAddon?: { open?: unknown } };
  const opener = m.nativeAddon?.open;
  return m.allDbs instanceof Map && m.allDbs[HOOKED] === LMDB_PATCH && (opener === undefined || opener === m.open);
}

patchLmdb({ ...installed('lmdb'), allDbs: (lmdb as unknown as { allDbs?: unknown }).allDbs });
