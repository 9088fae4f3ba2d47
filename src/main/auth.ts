/**
 * SMTP AUTH (PLAIN, LOGIN) through the receiver's `checkAuth` hook. smtp-server
 * decodes the exchange; this decides. It fails closed: anything but an explicit
 * yes refuses, and a hook that throws or runs late gets `454 4.7.0` (the reason
 * in the log, never to the client). A refusal waits `authFailureDelay` ms before
 * its `535 5.7.8` (slowing password guessing) and is published as a `rejected`
 * event, stage 'auth', so metrics and logs count it.
 */
import type { SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerSession } from 'smtp-server';
import { SmtpReply } from '../core/reply.ts';
import type { AuthCredentials } from '../core/types.ts';
import { clients, limited, reasonOf, refuse, replyFor, type Context } from './context.ts';
import { sessionInfo } from './session.ts';

export const AuthReplies = {
  badCredentials: new SmtpReply(535, '5.7.8', 'Authentication credentials invalid'),
  temporaryFailure: new SmtpReply(454, '4.7.0', 'Temporary authentication failure, try again later'),
} as const;

type Done = (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void;

/** The user name a verdict accepts, or undefined (refused). */
function acceptedUser(verdict: unknown, username: string): string | undefined {
  if (verdict === true) return username;
  if (typeof verdict === 'string' && verdict.length > 0 && verdict.length <= 512 && !/[\x00-\x1f\x7f]/.test(verdict)) return verdict;
  return undefined;
}

export function onAuth(ctx: Context) {
  return (auth: SMTPServerAuthentication, session: SMTPServerSession, done: Done): void => {
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
      const delay = ctx.opts.authFailureDelay;
      // the refusal is counted at once; only the reply waits
      const err = refuse('auth', reason, reply, session);
      if (delay > 0) setTimeout(() => done(err), delay).unref();
      else done(err);
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
