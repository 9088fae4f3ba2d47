/**
 * Ownership of a queue directory: exactly one process opens a queue's LMDB
 * environment (see the store's header for why). The owner holds an exclusive
 * lock on `<queue>/lock` — an fcntl open-file-description lock (Linux
 * F_OFD_SETLK, BSD flock on macOS) through fs-native-extensions — which the
 * kernel releases when the process dies, however it dies. No stale lock can
 * outlive its holder; the pid and role written into the file are only there to
 * tell people who holds it.
 *
 * `serve` also holds `<queue>/lock.serve` for its whole life, from before it
 * waits for the queue lock: commands that find it held leave the queue to the
 * daemon (they wait for its control socket), so a stream of queue commands
 * cannot starve a daemon that is starting.
 *
 * Worker threads of the owner share its lock: they `adopt` the owner's file
 * descriptor (threads share the process's descriptors) after checking that it
 * is this queue's lock file.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tryLock, unlock } from 'fs-native-extensions';

/** Who holds a queue: `serve` (the daemon) or a queue command that found no daemon. */
export type OwnerRole = 'serve' | 'runqueue' | 'showqueue' | 'queue-op' | 'tool';

export interface OwnerInfo {
  pid: number;
  role: string;
}

/** The queue is held by another process. */
export class QueueLocked extends Error {
  constructor(readonly queueDir: string, readonly owner: OwnerInfo | undefined, detail = '') {
    super(`queue ${queueDir} is in use by ${describeOwner(owner)}${detail}`);
    this.name = 'QueueLocked';
  }
}

export function describeOwner(owner: OwnerInfo | undefined): string {
  if (!owner) return 'another process';
  return owner.role === 'serve' ? `smtp-receive serve (pid ${owner.pid})` : `smtp-receive ${owner.role} (pid ${owner.pid})`;
}

/** Locks this thread holds (or adopted), by resolved queue directory. */
const held = new Map<string, QueueLock>();

export class QueueLock {
  private released = false;

  private constructor(readonly queueDir: string, readonly fd: number, private readonly owned: boolean, private intentFd?: number) {}

  static path(queueDir: string): string {
    return join(queueDir, 'lock');
  }

  static intentPath(queueDir: string): string {
    return join(queueDir, 'lock.serve');
  }

  /** Whether a `serve` is running on the queue or waiting to (it holds lock.serve). */
  static serveWants(queueDir: string): boolean {
    let fd: number;
    try {
      fd = openSync(QueueLock.intentPath(queueDir), 'r');
    } catch {
      return false; // no serve ever ran here
    }
    try {
      const free = tryLock(fd, { shared: true });
      if (free) unlock(fd);
      return !free;
    } finally {
      closeSync(fd);
    }
  }

  /** The lock this thread holds on a queue, if any. */
  static held(queueDir: string): QueueLock | undefined {
    return held.get(resolve(queueDir));
  }

  /** What the lock file says about its holder (a hint: the lock itself is the proof). */
  static owner(queueDir: string): OwnerInfo | undefined {
    try {
      const m = /^(\d+) (\S+)/.exec(readFileSync(QueueLock.path(queueDir), 'utf8'));
      return m ? { pid: Number(m[1]), role: m[2]! } : undefined;
    } catch {
      return undefined;
    }
  }

  /** Takes the lock if it is free; undefined when another process (or another lock in this one) holds it. */
  static tryAcquire(queueDir: string, role: OwnerRole): QueueLock | undefined {
    const dir = resolve(queueDir);
    if (held.has(dir)) return undefined;
    const fd = openSync(QueueLock.path(dir), 'a+', 0o600);
    let granted = false;
    try {
      granted = tryLock(fd);
    } finally {
      if (!granted) closeSync(fd);
    }
    if (!granted) return undefined;
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid} ${role}\n`, 0);
    const lock = new QueueLock(dir, fd, true);
    held.set(dir, lock);
    return lock;
  }

  /**
   * Takes the lock, waiting up to `waitMs` for a holder whose role is not in
   * `refuseAt` (those fail at once). `onWait` is told once that we wait.
   */
  static async acquire(queueDir: string, role: OwnerRole, o: {
    waitMs?: number; refuseAt?: string[]; onWait?: (owner: OwnerInfo | undefined) => void; pollMs?: number;
  } = {}): Promise<QueueLock> {
    const dir = resolve(queueDir);
    const deadline = Date.now() + (o.waitMs ?? 0);
    let told = false;
    const wait = async (): Promise<void> => {
      const owner = QueueLock.owner(dir);
      if (owner && o.refuseAt?.includes(owner.role)) throw new QueueLocked(dir, owner);
      if (Date.now() >= deadline) throw new QueueLocked(dir, owner, o.waitMs ? ` (waited ${o.waitMs} ms)` : '');
      if (!told) {
        told = true;
        o.onWait?.(owner);
      }
      await sleep(o.pollMs ?? 50);
    };
    // serve first claims its place (lock.serve), so that queue commands stop taking the queue lock
    let intentFd: number | undefined;
    if (role === 'serve') {
      intentFd = openSync(QueueLock.intentPath(dir), 'a+', 0o600);
      try {
        // held only by another serve (or, for a moment, by a command looking): refused or retried
        while (!tryLock(intentFd)) await wait();
      } catch (err) {
        closeSync(intentFd);
        throw err;
      }
    }
    try {
      for (;;) {
        const lock = QueueLock.tryAcquire(dir, role);
        if (lock) {
          lock.intentFd = intentFd;
          return lock;
        }
        await wait();
      }
    } catch (err) {
      if (intentFd !== undefined) {
        unlock(intentFd);
        closeSync(intentFd);
      }
      throw err;
    }
  }

  /**
   * In a worker thread of the owner: takes on the owner's lock through its
   * file descriptor, after checking that the descriptor is this queue's lock file.
   */
  static adopt(queueDir: string, fd: number): QueueLock {
    const dir = resolve(queueDir);
    const existing = held.get(dir);
    if (existing) return existing;
    const a = fstatSync(fd);
    const b = statSync(QueueLock.path(dir));
    if (a.ino !== b.ino || a.dev !== b.dev) throw new Error(`queue ${dir}: descriptor ${fd} is not this queue's lock file`);
    const lock = new QueueLock(dir, fd, false);
    held.set(dir, lock);
    return lock;
  }

  /** Gives the queue up (the owner only; an adopted lock just forgets it). */
  release(): void {
    if (this.released) return;
    this.released = true;
    held.delete(this.queueDir);
    if (!this.owned) return;
    try {
      ftruncateSync(this.fd, 0);
      unlock(this.fd);
    } finally {
      closeSync(this.fd);
      if (this.intentFd !== undefined) closeSync(this.intentFd); // closing releases its lock
    }
  }
}
