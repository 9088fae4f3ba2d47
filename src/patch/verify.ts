/**
 * What the run-time patches (smtp-server.ts, lmdb.ts) check before they touch
 * anything: the exact version of the package this copy of smtp-receive
 * resolves, and that the code they replace or wrap is, byte for byte, the code
 * they were written against. Any difference is an error that says what to do —
 * never a silently unpatched run.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

/** A dependency that cannot be patched; `code` is the check to use across copies of this module. */
export class PatchError extends Error {
  readonly code = 'ERR_SMTP_RECEIVE_PATCH';
  constructor(pkg: string, problem: string) {
    super(`smtp-receive cannot patch ${pkg}: ${problem}. smtp-receive refuses to run with an unpatched ${pkg} ` +
      '(see "Patched dependencies" in its README); reinstall its dependencies at the versions it pins ' +
      `(npm ls ${pkg}; no "overrides" for ${pkg}; no other tool patching ${pkg})`);
    this.name = 'PatchError';
  }
}

/** The directory and version of the copy of `pkg` that this module resolves (the one smtp-receive loads). */
export function installed(pkg: string): { dir: string; version: string } {
  let dir = dirname(require.resolve(pkg));
  for (;;) {
    try {
      const json = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (json.name === pkg) return { dir, version: String(json.version) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const up = dirname(dir);
    if (up === dir) throw new PatchError(pkg, `no package.json of ${pkg} above ${require.resolve(pkg)}`);
    dir = up;
  }
}

export function checkVersion(pkg: string, found: { dir: string; version: string }, wanted: string): void {
  if (found.version !== wanted) {
    throw new PatchError(pkg, `it needs ${pkg} ${wanted} exactly, and ${found.dir} is ${pkg} ${found.version}`);
  }
}

/** The first 16 hex digits of the SHA-256 of a text. */
export function fingerprint(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** The source text of a function, as Function.prototype.toString gives it (what was loaded, not a file). */
export function sourceOf(fn: unknown): string | undefined {
  return typeof fn === 'function' ? Function.prototype.toString.call(fn) : undefined;
}

/**
 * Checks that `proto[name]` is the method whose source has `expected` as its
 * fingerprint, and returns it.
 */
export function originalMethod(pkg: string, owner: string, proto: object, name: string, expected: string): (...args: never[]) => unknown {
  const fn = (proto as Record<string, unknown>)[name];
  const source = sourceOf(fn);
  if (source === undefined) throw new PatchError(pkg, `${owner}.prototype.${name} is missing`);
  const found = fingerprint(source);
  if (found !== expected) {
    throw new PatchError(pkg, `${owner}.prototype.${name} is not the code this patch was written against ` +
      `(fingerprint ${found}, expected ${expected}): the installed copy was modified`);
  }
  return fn as (...args: never[]) => unknown;
}
