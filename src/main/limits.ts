/**
 * The limits and strict-syntax refusals of the patched smtp-server
 * (src/patch/smtp-limits.ts, smtp-syntax.ts) as smtp-server options: the
 * numbers from the serve options, and the listeners that count and publish
 * each refusal (`rejected`, `connectionRefused`) under its fixed reason label.
 */
import type { SMTPServerSession } from 'smtp-server';
import { events } from '../core/events.ts';
import type { LimitOptions } from '../patch/smtp-limits.ts';
import { clientKey } from './client-key.ts';
import { refuse } from './context.ts';
import type { ResolvedOptions } from './options.ts';

export function limitOptions(opts: ResolvedOptions): LimitOptions & { maxCommandLength: number } {
  const prefixLength = opts.ipv6PrefixLength;
  return {
    maxClientsPerIp: opts.maxClientsPerIp,
    maxCommands: opts.maxCommands,
    maxBadCommands: opts.maxBadCommands,
    dataTimeout: opts.dataTimeout,
    maxCommandLength: opts.maxLineLength,
    // one count per client over every listener (each gets a shallow copy of these options)
    clientCounts: new Map(),
    // an IPv6 client is its prefix (one host holds a /64), IPv4 its address
    clientKey: (address) => clientKey(address, prefixLength),
    onRefused(session, stage, reason, reply) {
      refuse(stage, reason, reply, session as SMTPServerSession);
    },
    onClientRefused(remoteAddress, reason, reply, range) {
      if (events.connectionRefused.hasSubscribers) {
        events.connectionRefused.publish({ reason, remoteAddress, reply: `${reply.code} ${reply.line}`, ...(range ? { prefix: range } : {}) });
      }
    },
  };
}
