/** Loads a receiver module (default export: a Receiver subclass) — the same way in every thread. */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BuiltinReceiver } from '../receivers/index.ts';
import { Receiver } from './receiver.ts';
import type { ReceiverConfig } from './types.ts';

export async function loadReceiverClass(path: string | undefined): Promise<typeof Receiver> {
  if (!path) return Receiver;
  const file = isAbsolute(path) ? path : resolve(path);
  let mod: { default?: unknown };
  try {
    mod = await importModule(file);
  } catch (err) {
    throw new Error(`receiver module ${file} could not be loaded: ${(err as Error).message}`, { cause: err });
  }
  if (!Receiver.isReceiverClass(mod.default)) {
    throw new Error(`receiver module ${file} must default-export a subclass of Receiver (from 'smtp-receive')`);
  }
  return mod.default;
}

/**
 * Imports a module; a TypeScript receiver loads through tsx (a dependency),
 * registered on first need — worker threads do not inherit a parent's loader.
 */
async function importModule(file: string): Promise<{ default?: unknown }> {
  const url = pathToFileURL(file).href;
  try {
    return (await import(url)) as { default?: unknown };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_UNKNOWN_FILE_EXTENSION' || !/\.[cm]?ts$/.test(file)) throw err;
    const { register } = await import('tsx/esm/api');
    register();
    // a new URL: the failed import above stays cached under the plain one
    return (await import(`${url}?tsx`)) as { default?: unknown };
  }
}

/**
 * The receiver a thread runs: the module at `path`, else the built-in one
 * `builtin` names (loaded only then), else the base Receiver.
 */
export async function createReceiver(path: string | undefined, config: ReceiverConfig, builtin?: BuiltinReceiver): Promise<Receiver> {
  let receiver: Receiver;
  if (!path && builtin) {
    receiver = await (await import('../receivers/index.ts')).createBuiltin(builtin);
  } else {
    const Cls = await loadReceiverClass(path);
    receiver = new Cls();
  }
  receiver.config = config;
  return receiver;
}

/**
 * True when `receiver` overrides `hook` (so a round trip to a worker can be
 * skipped when it does not). Walks the prototype chain down to the base class
 * rather than comparing with this module's prototype: a receiver module may
 * extend another copy of the base class (src/ under tsx vs dist/, two installs).
 */
export function overrides(receiver: Receiver, hook: keyof Receiver): boolean {
  for (let proto = Object.getPrototypeOf(receiver) as object | null; proto; proto = Object.getPrototypeOf(proto) as object | null) {
    if (Receiver.isBaseClass((proto as { constructor?: unknown }).constructor)) return false;
    if (Object.hasOwn(proto, hook)) return true;
  }
  return false;
}
