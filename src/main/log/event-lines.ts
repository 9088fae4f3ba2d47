/**
 * What happens, as log lines, Postfix-like: one per session (at its end) and
 * one per message event. Each line is text for a person (`ID: queued
 * from=<…> size=… rcpts=… peer=host[addr]`) and fields for JSON and syslog
 * (`event` names it; syslog's MSGID). The receive path, the runner and the
 * workers publish events (src/core/events.ts); this subscribes to them.
 */
import { on, type ConnectionRefusedEvent, type DeliveryEvent, type QueuedEvent, type RejectedEvent, type SessionEndEvent } from '../../core/events.ts';
import { log } from '../../core/log.ts';

/** A client as Postfix writes it: `host[addr]`, or `[addr]` without a name. */
export const peer = (host: string | undefined, addr: string): string => `${host ?? ''}[${addr}]`;

const seconds = (ms: number): string => (ms / 1000).toFixed(ms < 10_000 ? 2 : 0);

function queued(e: QueuedEvent): void {
  log.event('info', {
    event: 'queued', id: e.id, from: e.from, size: e.size, rcpts: e.rcpts, peer: e.remoteAddress, peerHost: e.peerHost,
    session: e.sessionId, storage: e.storage,
  }, `${e.id}: queued from=<${e.from}> size=${e.size} rcpts=${e.rcpts} peer=${peer(e.peerHost, e.remoteAddress)} session=${e.sessionId}`);
}

function rejected(e: RejectedEvent): void {
  const to = e.to === undefined ? undefined : Array.isArray(e.to) ? e.to : [e.to];
  const env = `${e.from !== undefined ? ` from=<${e.from}>` : ''}${to?.length ? ` to=${to.map((t) => `<${t}>`).join(',')}` : ''}`;
  log.event('info', {
    event: 'rejected', id: e.id, stage: e.stage, reason: e.reason, code: e.code, reply: e.reply, peer: e.remoteAddress,
    from: e.from, to, session: e.sessionId,
  }, `${e.id ?? 'NOQUEUE'}: rejected stage=${e.stage} reason=${e.reason} peer=[${e.remoteAddress}]${env} session=${e.sessionId}: ${e.reply}`);
}

function delivery(e: DeliveryEvent): void {
  const base = { id: e.id, attempt: e.attempt, queuedMs: Math.round(e.queuedMs), ms: Math.round(e.ms) };
  const timing = `attempt=${e.attempt} delay=${seconds(e.queuedMs)}s took=${seconds(e.ms)}s`;
  if (e.outcome === 'delivered') {
    const failed = e.failed?.length ? ` failed=${e.failed.map((f) => `<${f}>`).join(',')}` : '';
    log.event('info', { event: 'delivered', ...base, failed: e.failed }, `${e.id}: delivered ${timing}${failed}`);
    return;
  }
  if (e.outcome === 'expired') {
    log.event('warn', { event: 'expired', ...base, reason: e.reason }, `${e.id}: expired ${timing}, now on hold: ${e.reason ?? ''}`);
    return;
  }
  // deferred: deliver said not yet; error: it failed inside (the runner logs the stack): retried the same way
  const next = e.nextAttempt === undefined ? undefined : new Date(e.nextAttempt).toISOString();
  log.event(e.outcome === 'error' ? 'warn' : 'info', {
    event: 'deferred', ...base, reason: e.reason, nextAttempt: next, ...(e.outcome === 'error' ? { internal: true } : {}),
  }, `${e.id}: deferred ${timing} next=${next ?? '-'}: ${e.reason ?? ''}`);
}

function sessionEnd(e: SessionEndEvent): void {
  log.event('info', {
    event: 'session', session: e.sessionId, peer: e.remoteAddress, peerHost: e.peerHost, helo: e.helo,
    durationMs: Math.round(e.durationMs), queued: e.queued, rejected: e.rejected,
  }, `disconnect from ${peer(e.peerHost, e.remoteAddress)} helo=<${e.helo}> queued=${e.queued} rejected=${e.rejected} `
    + `time=${seconds(e.durationMs)}s session=${e.sessionId}`);
}

function connectionRefused(e: ConnectionRefusedEvent): void {
  log.event('info', { event: 'refused', peer: e.remoteAddress, prefix: e.prefix, reason: e.reason, reply: e.reply },
    `connection refused peer=[${e.remoteAddress}]${e.prefix ? ` prefix=${e.prefix}` : ''} reason=${e.reason}${e.reply ? `: ${e.reply}` : ''}`);
}

/**
 * Subscribes to the events whose lines pass the log level (below info, only
 * the delivery outcomes that warn), so that a quieter log costs the receive
 * path nothing. Returns the unsubscribe function.
 */
export function subscribeEventLines(): () => void {
  const offs = [on('delivery', delivery)];
  if (log.enabled('info')) {
    offs.push(on('queued', queued), on('rejected', rejected), on('sessionEnd', sessionEnd), on('connectionRefused', connectionRefused));
  }
  return () => {
    for (const off of offs) off();
  };
}
