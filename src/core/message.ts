/** The message object hooks receive: the seed's fields plus `log`. */
import { format } from 'node:util';
import { log } from './log.ts';
import type { MessageFields, MessageSnapshot } from './types.ts';

export interface Message extends MessageFields {
  /** During deliver: the recipients not yet known to be delivered (not persisted). */
  undelivered?: string[];
  /** During deliver/expired: the attempts made before this one (not persisted). */
  attempts?: number;
  [field: string]: unknown;
}

export class Message {
  constructor(snapshot: MessageSnapshot) {
    Object.assign(this, snapshot);
  }

  /** The seed's `$message->log($text, $args)`: a printf-style line in the log, tagged with the id. */
  log(text: string, ...args: unknown[]): void {
    if (log.enabled('info')) log.event('info', { event: 'hook', id: this.id }, `${this.id}: ${format(text, ...args)}`);
  }

  /** Plain data: every own field, for storage or a thread boundary. */
  toSnapshot(): MessageSnapshot {
    return { ...this } as MessageSnapshot;
  }
}
