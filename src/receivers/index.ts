/**
 * The built-in receivers, as `serve` runs them without a receiver module:
 * plain data naming one and its options (it crosses to the worker threads),
 * and the factory each thread builds it with. Each module loads on first use.
 */
import type { Receiver } from '../core/receiver.ts';
import type { MaildirOptions } from './maildir.ts';
import type { RelayOptions } from './relay.ts';
import type { WebhookOptions } from './webhook.ts';

export type BuiltinReceiver =
  /** Each recipient's copy into a Maildir under a root (what `serve` runs by default). */
  | { kind: 'maildir'; options?: MaildirOptions }
  /**
   * POST each message to a URL. `secretFile`: the file `options.secret` was read from
   * (--webhook-secret-file); the queue records this path, never the secret (./recorded.ts).
   */
  | { kind: 'webhook'; options: WebhookOptions; secretFile?: string }
  /** Forward each message to a smarthost over SMTP. */
  | { kind: 'relay'; options: RelayOptions }
  /** The base Receiver: accepts mail for the local domains, delivers nothing (messages stay queued). */
  | { kind: 'none' };

export async function createBuiltin(spec: BuiltinReceiver): Promise<Receiver> {
  switch (spec.kind) {
    case 'maildir':
      return new (await import('./maildir.ts')).MaildirReceiver(spec.options);
    case 'webhook':
      return new (await import('./webhook.ts')).WebhookReceiver(spec.options);
    case 'relay':
      return new (await import('./relay.ts')).RelayReceiver(spec.options);
    case 'none':
      return new (await import('../core/receiver.ts')).Receiver();
    default:
      throw new TypeError(`unknown built-in receiver ${JSON.stringify((spec as { kind?: unknown }).kind)} (maildir, webhook, relay, none)`);
  }
}
