/**
 * SMTP AUTH (PLAIN, LOGIN) through the receiver's `checkAuth` hook. smtp-server
 * decodes the exchange; this decides. It fails closed: anything but an explicit
 * yes refuses, and a hook that throws or runs late gets `454 4.7.0` (the reason
 * in the log, never to the client). A refusal waits `authFailureDelay` ms before
 * its `535 5.7.8` (slowing password guessing) and is published as a `rejected`
 * event, stage 'auth', so metrics and logs count it. After `maxAuthFailures`
 * refusals in one connection the last one is followed by `421 4.7.0` and the
 * connection is closed: a guesser must reconnect, TLS handshake and all, every few
 * guesses, and `maxClientsPerIp` bounds how many it runs at once.
 */
import type { SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerSession } from 'smtp-server';
import { SmtpReply } from '../core/reply.ts';
import type { AuthCredentials } from '../core/types.ts';
import { closeAfterReply } from '../patch/smtp-limits.ts';
import { clients, limited, reasonOf, refuse, replyFor, type Context } from './context.ts';
import { sessionInfo } from './session.ts';

export const AuthReplies = {
  badCredentials: new SmtpReply(535, '5.7.8', 'Authentication credentials invalid'),
  temporaryFailure: new SmtpReply(454, '4.7.0', 'Temporary authentication failure, try again later'),
  tooManyFailures: new SmtpReply(421, '4.7.0', 'Too many authentication failures, closing connection'),
} as const;

/** Failed AUTHs per connection (smtp-server keeps one session object per connection, across STARTTLS). */
const failures = new WeakMap<SMTPServerSession, number>();

type Done = (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void;

/** The user name a verdict accepts, or undefined (refused). */
function acceptedUser(verdict: unknown, username: string): string | undefined {
  if (verdict === true) return username;
  if (typeof verdict === 'string' && verdict.length > 0 && verdict.length <= 512 && !/[\x00-\x1f\x7f]/.test(verdict)) return verdict;
  return undefined;
}

export function onAuth(ctx: Context) {
  return (auth: SMTPServerAuthentication, session: SMTPServerSession, done: Done): void => {
    // not a maxAuthFailures failure: smtp-server answers a method it does not offer with 504 itself (a bad
    // command, limited by maxBadCommands), so this is only a guard should authMethods ever grow
    if (auth.method !== 'PLAIN' && auth.method !== 'LOGIN') {
      done(refuse('auth', 'bad-method', new SmtpReply(504, '5.5.4', 'Unrecognized authentication type'), session));
      return;
    }
    const credentials: AuthCredentials = {
      method: auth.method, username: auth.username ?? '', password: auth.password ?? '',
      authzid: (auth as { authzid?: string }).authzid ?? '',
    };
    const info = sessionInfo(session, clients.get(session)!);
    const fail = (reply: SmtpReply, reason: string): void => {
      const { authFailureDelay: delay, maxAuthFailures: max } = ctx.opts;
      // the refusal is counted at once; only the reply waits
      const err = refuse('auth', reason, reply, session);
      // Only a permanent refusal counts towards maxAuthFailures: the credentials were checked and refused
      // (a wrong password, or the receiver's own 5xx such as "account locked"). A 4xx (the hook threw or
      // ran late, or refused for now) tells a guesser nothing about the password, and counting our own
      // outage against a client would disconnect honest ones while the user database is down.
      const n = reply.code >= 500 ? (failures.get(session) ?? 0) + 1 : 0;
      if (n > 0) failures.set(session, n);
      const last = max > 0 && n >= max;
      const answer = (): void => {
        // smtp-server sends the reply inside done(): the 421 follows it before any pipelined command runs
        if (last) closeAfterReply(session, 'auth', 'too-many-auth-failures', AuthReplies.tooManyFailures);
        done(err);
      };
      if (delay > 0) setTimeout(answer, delay).unref();
      else answer();
    };
    limited('checkAuth', ctx.opts.hookTimeout, () => ctx.receiver.checkAuth(credentials, info)).then(
      (verdict) => {
        const user = acceptedUser(verdict, credentials.username);
        if (user === undefined) return fail(AuthReplies.badCredentials, 'bad-credentials');
        done(null, { user });
      },
      (thrown) => {
        // a reply the hook threw on purpose is sent as it is (a 5xx or 4xx); anything else is internal: 454, logged
        const reason = reasonOf(thrown);
        const reply = reason === 'receiver' ? replyFor(thrown, 'checkAuth') : replyFor(thrown, 'checkAuth', AuthReplies.temporaryFailure);
        fail(reply.code >= 400 ? reply : AuthReplies.temporaryFailure, reason);
      },
    );
  };
}
