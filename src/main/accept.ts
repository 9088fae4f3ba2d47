/**
 * End of the envelope, DATA to 250: stream the body (inline or spool file),
 * run predeliver in a worker, make the body durable, commit the record to LMDB
 * and wait for the flush — only then answer `250 2.0.0 Ok: queued as <ID>`.
 */
import { unlink } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { SMTPServerSession } from 'smtp-server';
import type { StoredHead } from '../core/auth.ts';
import { protocolName, traceHeaders } from '../core/headers.ts';
import { events } from '../core/events.ts';
import { newId } from '../core/id.ts';
import { log } from '../core/log.ts';
import { Replies, SmtpReply, queuedLine, toServerError } from '../core/reply.ts';
import { spoolPath } from '../core/spool.ts';
import type { QueueRecord } from '../core/store.ts';
import type { MessageSnapshot } from '../core/types.ts';
import { clients, refuse, replyFor, sessionStats, transactions, type Context } from './context.ts';
import { receiveData } from './data-sink.ts';
import { isPoolFailure } from './pool.ts';
import { tlsOf } from './tls.ts';

type Done = (err: Error | null, message?: string) => void;

/** A refusal after DATA began: its reply and the label that metrics count it under. */
interface Refusal {
  reply: SmtpReply;
  stage: 'data' | 'predeliver';
  reason: string;
  id: string;
  to: string[];
}

const refusal = (reply: SmtpReply, stage: Refusal['stage'], reason: string, id: string, to: string[]): Refusal => ({ reply, stage, reason, id, to });

/** Storage trouble (disk full, LMDB map full) is "try later", never a lost message. */
function storageReply(err: unknown, where: string): SmtpReply {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const text = String((err as Error | undefined)?.message ?? err);
  // LMDB reports a write that the full disk cut short as an I/O error (EIO, "code 5")
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EIO' || (err as { code?: unknown })?.code === 5
    || /MDB_MAP_FULL|No space left|Input\/output error/i.test(text)) {
    log.error('%s: out of storage: %s', where, text);
    return Replies.insufficientStorage;
  }
  return replyFor(err, where);
}

export function onData(ctx: Context) {
  return (stream: Readable, session: SMTPServerSession, done: Done): void => {
    accept(ctx, stream, session).then(
      (r) => (typeof r === 'string' ? done(null, r)
        : r === GONE ? done(toServerError(Replies.localError)) // nobody left to read it
          : done(refuse(r.stage, r.reason, r.reply, session, { id: r.id, to: r.to }))),
      (err) => done(refuse('data', 'internal', replyFor(err, 'DATA'), session)),
    );
  };
}

/** The client disconnected during DATA. */
const GONE = Symbol('client gone');

/** Resolves to the 250 text when the message is queued, or the refusal. */
async function accept(ctx: Context, stream: Readable, session: SMTPServerSession): Promise<Refusal | string | typeof GONE> {
  const client = clients.get(session)!;
  const to = [...new Set(transactions.get(session.envelope)?.to ?? [])];
  const id = newId();
  const time = Date.now();
  const textFile = spoolPath(ctx.queueDir, id);
  const helo = session.hostNameAppearsAs || '';
  const tls = tlsOf(session);
  const header = traceHeaders({
    id, helo, peerAddr: client.remoteAddress, peerHost: client.peerHost, ident: client.ident,
    hostname: ctx.opts.hostname, tls,
    protocol: protocolName(session.openingCommand !== 'HELO', tls !== undefined, typeof session.user === 'string'),
    to, envelope: ctx.addEnvelope, time: new Date(time),
  });
  // the end of DATA (the client's final dot), for the end-of-DATA → 250 time
  let eod = 0;
  const timed = events.queued.hasSubscribers;
  if (timed) stream.once('end', () => { eod = performance.now(); });
  const data = await receiveData(stream, {
    header, inlineMax: ctx.opts.inlineMax, maxSize: ctx.maxDataLength, spoolFile: textFile,
  });
  if (data.kind === 'too-big') return refusal(Replies.messageTooBig, 'data', 'too-big', id, to);
  if (data.kind === 'aborted') {
    // routine traffic: an info line, no stack
    log.event('info', { event: 'aborted', id, peer: client.remoteAddress, received: data.received, session: session.id },
      `${id}: client [${client.remoteAddress}] disconnected during DATA after ${data.received} bytes; nothing kept session=${session.id}`);
    return GONE;
  }
  if (data.kind === 'failed') return refusal(storageReply(data.error, `DATA ${id}`), 'data', 'storage', id, to);

  const mailFrom = session.envelope.mailFrom;
  const message: MessageSnapshot = {
    id, peerAddr: client.remoteAddress, peerHost: client.peerHost, ident: client.ident, helo,
    mimeType: session.envelope.bodyType === '8bitmime' ? '8BITMIME' : '7BIT',
    from: mailFrom ? mailFrom.address : '', to, time, textFile, size: data.size,
  };
  const inline = data.kind === 'inline' ? data.body : undefined;
  // the spool file's directory entry becomes durable while predeliver runs
  const durable = inline ? undefined : ctx.spoolSync.sync();
  durable?.catch(() => {}); // awaited below; a failure here must not go unhandled meanwhile

  // an inline body has a file too once predeliver asked for body.path(): remove it either way
  const discard = (): Promise<void> => unlink(textFile).catch(() => {});
  let head: StoredHead | undefined;
  // authentication (on by default) runs in the same task, before predeliver
  if (ctx.hooks.predeliver || ctx.opts.auth) {
    const started = performance.now();
    const limit = ctx.opts.predeliverTimeout + (ctx.opts.auth ? ctx.opts.authTimeout : 0);
    const result = await ctx.pool.run({ kind: 'predeliver', message, inline, traceLength: header.length }, limit);
    const outcome = result.ok ? 'accept' : isPoolFailure(result) ? (result.pool === 'crashed' ? 'error' : result.pool)
      : result.internal ? 'error' : 'reject';
    if (events.predeliver.hasSubscribers) events.predeliver.publish({ id, outcome, ms: performance.now() - started });
    if (!result.ok) {
      await discard();
      if (isPoolFailure(result)) {
        if (result.pool === 'busy') return refusal(Replies.busy, 'predeliver', 'busy', id, to);
        log.error('predeliver %s failed: %s', id, result.error);
        return refusal(Replies.localError, 'predeliver', result.pool === 'timeout' ? 'hook-timeout' : 'hook-error', id, to);
      }
      if (result.internal) log.error('predeliver %s failed: %s', id, result.error);
      return refusal(SmtpReply.fromData(result.reply), 'predeliver', result.internal ? 'hook-error' : (result.reason ?? 'receiver'), id, to);
    }
    if (result.auth && result.head) {
      message.auth = result.auth;
      message.size += result.head.bytes.length - result.head.cut;
      head = result.head;
    }
  }
  const record: QueueRecord = {
    v: 1, msg: message, state: 'queued', storage: inline ? 'inline' : 'file', attempts: 0, nextAttempt: time,
  };
  if (head) record.head = head;
  // the first delivery attempt starts at once when the runner has room: the record is written already leased
  const lease = ctx.opts.immediate ? ctx.runner?.reserve() : undefined;
  if (lease) record.lease = lease;
  try {
    await durable;
    await ctx.store.enqueue(record, inline);
  } catch (err) {
    if (lease) ctx.runner!.cancel();
    await discard();
    return refusal(storageReply(err, `queue ${id}`), 'data', 'storage', id, to);
  }
  if (lease) ctx.runner!.enqueued(record, inline);
  const stats = sessionStats.get(session);
  if (stats) stats.queued++;
  if (timed) {
    events.queued.publish({
      id, from: message.from, rcpts: to.length, size: message.size, storage: record.storage,
      sessionId: session.id, remoteAddress: client.remoteAddress, peerHost: client.peerHost,
      eodMs: eod ? performance.now() - eod : 0,
    });
  }
  return queuedLine(id);
}
