/**
 * Queue ids: unique, time-ordered, safe as file names.
 * 9 base-36 digits of milliseconds + 4 of a per-process sequence + 4 random
 * per process (so processes sharing a queue do not collide): 17 characters,
 * [0-9A-Z] only; ids sort by creation time (to the millisecond).
 */
import { randomInt } from 'node:crypto';

const SEQ_SPACE = 36 ** 4;
const PROCESS_TAG = randomInt(36 ** 4).toString(36).padStart(4, '0').toUpperCase();
let lastMs = 0;
let msPart = '';
let seq = 0;

export function newId(now = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    seq = 0;
    msPart = '';
  } else if (++seq >= SEQ_SPACE) {
    // more than 1.6M ids in one ms: borrow the next millisecond
    lastMs += 1;
    seq = 0;
    msPart = '';
  }
  if (!msPart) msPart = lastMs.toString(36).padStart(9, '0').toUpperCase();
  return msPart + seq.toString(36).padStart(4, '0').toUpperCase() + PROCESS_TAG;
}

const ID = /^[0-9A-Z]{17}$/;

/** True for strings that newId could have made (never a path or anything with a separator). */
export function isId(s: string): boolean {
  return ID.test(s);
}
