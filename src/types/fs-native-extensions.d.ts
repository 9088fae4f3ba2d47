// The part of fs-native-extensions (no bundled types) that the queue lock uses.
declare module 'fs-native-extensions' {
  /** Requests an exclusive (or shared) lock on the whole file; false when another descriptor holds it. */
  export function tryLock(fd: number, options?: { shared?: boolean }): boolean;
  export function unlock(fd: number): void;
}
