/**
 * The envelope phase: connect (ident, checkAccess), MAIL FROM (checkMailFrom)
 * and RCPT TO (checkRcptTo, redirects, the recipient limit), wired to
 * smtp-server's callbacks. Hooks that fail never accept (no failing open).
 */
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import { isHeaderSafe } from '../core/headers.ts';
import { events } from '../core/events.ts';
import { Replies, SmtpReply } from '../core/reply.ts';
import type { ClientInfo, SessionInfo } from '../core/types.ts';
import { clients, limited, reasonOf, refuse, replyFor, sessionStats, transactions, type Context } from './context.ts';
import { queryIdent } from './lookup.ts';
import { tlsOf } from './tls.ts';

type Done = (err?: Error | null) => void;

export function sessionInfo(session: SMTPServerSession, client: ClientInfo): SessionInfo {
  const mailFrom = session.envelope.mailFrom;
  return {
    client,
    helo: session.hostNameAppearsAs || '',
    from: mailFrom ? mailFrom.address : undefined,
    to: transactions.get(session.envelope)?.to ?? [],
    user: typeof session.user === 'string' ? session.user : undefined,
    tls: tlsOf(session),
  };
}

/** A hook's returned refusal as a reply (a string is the seed's form; a bad one is an internal error). */
function refusal(verdict: unknown, hook: string): SmtpReply | undefined {
  if (verdict === undefined || verdict === null || verdict === true || verdict === 0) return undefined;
  if (!SmtpReply.is(verdict) && typeof verdict !== 'string') return undefined;
  const reply = replyFor(verdict, hook);
  return reply.code >= 400 ? reply : undefined;
}

/** At connection time only 421 (try later) and 554 (go away) are valid refusals. */
function connectionRefusal(reply: SmtpReply): SmtpReply {
  if (reply.code === 421 || reply.code === 554) return reply;
  return reply.temporary ? new SmtpReply(421, reply.enhanced, reply.text) : new SmtpReply(554, reply.enhanced, reply.text);
}

export function onConnect(ctx: Context) {
  return (session: SMTPServerSession, done: Done): void => {
    const host = session.clientHostname || '';
    const client: ClientInfo = {
      id: session.id,
      remoteAddress: session.remoteAddress,
      remotePort: session.remotePort,
      localAddress: session.localAddress,
      localPort: session.localPort,
      peerHost: host.startsWith('[') ? '' : host,
      ident: '',
    };
    clients.set(session, client);
    sessionStats.set(session, { start: performance.now(), queued: 0, rejected: 0 });
    if (events.connection.hasSubscribers) {
      events.connection.publish({ sessionId: session.id, remoteAddress: session.remoteAddress, remotePort: session.remotePort });
    }
    if (!ctx.opts.ident && !ctx.hooks.checkAccess) return done();
    void (async () => {
      if (ctx.opts.ident) {
        client.ident = await queryIdent({
          remoteAddress: client.remoteAddress, remotePort: client.remotePort,
          localAddress: client.localAddress, localPort: client.localPort,
          identPort: ctx.opts.identPort, timeoutMs: ctx.opts.identTimeout,
        });
      }
      if (ctx.hooks.checkAccess) {
        await limited('checkAccess', ctx.opts.hookTimeout, () => ctx.receiver.checkAccess(client));
      }
    })().then(
      () => done(),
      (thrown) => {
        const reply = connectionRefusal(replyFor(thrown, 'checkAccess', Replies.connectError));
        if (events.connectionRefused.hasSubscribers) {
          events.connectionRefused.publish({ reason: 'access', remoteAddress: session.remoteAddress, reply: `${reply.code} ${reply.line}` });
        }
        done(refuse('connect', reasonOf(thrown), reply, session));
      },
    );
  };
}

export function onMailFrom(ctx: Context) {
  return (address: SMTPServerAddress, session: SMTPServerSession, done: Done): void => {
    const from = address.address || '';
    if (!isHeaderSafe(from)) return done(refuse('mail', 'bad-address', Replies.badAddress, session));
    transactions.set(session.envelope, { to: [] });
    if (!ctx.hooks.checkMailFrom) return done();
    const client = clients.get(session)!;
    limited('checkMailFrom', ctx.opts.hookTimeout, () => ctx.receiver.checkMailFrom(from, sessionInfo(session, client))).then(
      (verdict) => {
        const reply = refusal(verdict, 'checkMailFrom');
        done(reply ? refuse('mail', 'receiver', reply, session) : null);
      },
      (thrown) => done(refuse('mail', reasonOf(thrown), replyFor(thrown, 'checkMailFrom'), session)),
    );
  };
}

export function onRcptTo(ctx: Context) {
  return (address: SMTPServerAddress, session: SMTPServerSession, done: Done): void => {
    const rcpt = address.address;
    if (session.envelope.rcptTo.length >= ctx.maxRecipients) {
      return done(refuse('rcpt', 'too-many-recipients', Replies.tooManyRecipients, session, { to: rcpt }));
    }
    if (!rcpt || !isHeaderSafe(rcpt)) return done(refuse('rcpt', 'bad-address', Replies.badAddress, session, { to: rcpt }));
    let tx = transactions.get(session.envelope);
    if (!tx) transactions.set(session.envelope, (tx = { to: [] }));
    const accept = (verdict: unknown): void => {
      const reply = refusal(verdict, 'checkRcptTo');
      if (reply) return done(refuse('rcpt', 'receiver', reply, session, { to: rcpt }));
      const redirect = (verdict as { redirect?: unknown } | undefined)?.redirect;
      if (redirect === undefined) {
        tx.to.push(rcpt);
        return done();
      }
      if (!Array.isArray(redirect) || redirect.length === 0
        || !redirect.every((r) => typeof r === 'string' && r.length > 0 && r.length <= 512 && isHeaderSafe(r))) {
        const bad = new TypeError(`checkRcptTo(${rcpt}) returned a bad redirect: ${JSON.stringify(redirect)}`);
        return done(refuse('rcpt', 'hook-error', replyFor(bad, 'checkRcptTo'), session, { to: rcpt }));
      }
      tx.to.push(...(redirect as string[]));
      done();
    };
    const client = clients.get(session)!;
    const info = sessionInfo(session, client);
    const failed = (thrown: unknown): void => done(refuse('rcpt', reasonOf(thrown), replyFor(thrown, 'checkRcptTo'), session, { to: rcpt }));
    if (!ctx.hooks.checkRcptTo) {
      // the built-in domain check is synchronous work wrapped in a promise: no time limit needed
      ctx.receiver.checkRcptTo(rcpt, info).then(accept, failed);
      return;
    }
    limited('checkRcptTo', ctx.opts.hookTimeout, () => ctx.receiver.checkRcptTo(rcpt, info)).then(accept, failed);
  };
}

/** smtp-server's onClose: the session's end event (logs: one line per session; metrics: active connections). */
export function onClose(session: SMTPServerSession): void {
  const stats = sessionStats.get(session);
  if (!stats || !events.sessionEnd.hasSubscribers) return;
  const client = clients.get(session);
  events.sessionEnd.publish({
    sessionId: session.id, remoteAddress: session.remoteAddress, peerHost: client?.peerHost ?? '',
    helo: session.hostNameAppearsAs || '', durationMs: performance.now() - stats.start,
    queued: stats.queued, rejected: stats.rejected,
  });
}
