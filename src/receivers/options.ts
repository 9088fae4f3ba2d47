/**
 * Options of the built-in receivers: checked once, when the receiver is
 * constructed (or in prestart, for checks that need the file system), with
 * errors that name the receiver and the option. `serve` maps them to its flags.
 */

const BRAND = Symbol.for('smtp-receive.ReceiverOptionError');

export class ReceiverOptionError extends Error {
  readonly [BRAND] = true;
  /**
   * @param receiver the class name, e.g. 'WebhookReceiver'
   * @param option the option's name in its options object, e.g. 'url'
   * @param detail what is wrong, without the names
   */
  constructor(readonly receiver: string, readonly option: string, readonly detail: string) {
    super(`${receiver} option ${option}: ${detail}`);
    this.name = 'ReceiverOptionError';
  }

  /** Brand check across module copies. */
  static is(value: unknown): value is ReceiverOptionError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** A whole number of milliseconds in [min, max], or the default when undefined. */
export function millis(receiver: string, option: string, v: unknown, fallback: number, min = 1, max = 86_400_000): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ReceiverOptionError(receiver, option, `must be a whole number of milliseconds from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** A non-empty string without control characters. */
export function text(receiver: string, option: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || /[\x00-\x1f\x7f]/.test(v)) {
    throw new ReceiverOptionError(receiver, option, `expected a non-empty string without control characters, got ${JSON.stringify(v)}`);
  }
  return v;
}
