/**
 * The messages between the main thread and the worker pool, in one place.
 * Only plain data crosses: a task carries a message snapshot (and, for a
 * predeliver before commit, the inline bytes); the worker answers with a
 * tagged result, never with a thrown error.
 */
import type { ReplyData } from './reply.ts';
import type { MessageSnapshot } from './types.ts';

export interface WorkerSetup {
  /** Receiver module to load (absolute path), or undefined for the default receiver. */
  receiverPath: string | undefined;
  queueDir: string;
  domains: string[];
  hostname: string;
}

export interface PredeliverTask {
  kind: 'predeliver';
  message: MessageSnapshot;
  /** The stored bytes of an inline body (not yet in LMDB at predeliver time). */
  inline?: Uint8Array;
}

export type Task = PredeliverTask;

export type TaskResult =
  | { ok: true }
  | { ok: false; reply: ReplyData; internal: false }
  /** The hook failed: `error` (with its stack) is for the log only. */
  | { ok: false; reply: ReplyData; internal: true; error: string };
