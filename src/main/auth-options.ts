/** The authentication flags of `serve`, and the settings the workers get from the options. */
import type { AuthSettings } from '../core/tasks.ts';
import { CommandUsageError, wholeNumber } from './command.ts';
import type { ResolvedOptions, ServeOptions } from './options.ts';

type AuthFlagValues = {
  auth?: string;
  'dmarc-reject'?: boolean;
  'dns-servers'?: string;
  'auth-dns-timeout'?: string;
  'auth-timeout'?: string;
};

/** `--auth on|off`, `--dmarc-reject`, `--dns-servers LIST`, `--auth-dns-timeout MS`, `--auth-timeout MS`. */
export function authFlags(v: AuthFlagValues): Pick<ServeOptions, 'auth' | 'dmarcReject' | 'dnsServers' | 'authDnsTimeout' | 'authTimeout'> {
  if (v.auth !== undefined && v.auth !== 'on' && v.auth !== 'off') {
    throw new CommandUsageError(`--auth: expected on or off, got ${JSON.stringify(v.auth)}`);
  }
  return {
    auth: v.auth === undefined ? undefined : v.auth === 'on',
    dmarcReject: v['dmarc-reject'],
    dnsServers: v['dns-servers']?.split(',').map((s) => s.trim()).filter(Boolean),
    authDnsTimeout: wholeNumber('auth-dns-timeout', v['auth-dns-timeout']),
    authTimeout: wholeNumber('auth-timeout', v['auth-timeout']),
  };
}

export function authSettings(o: ResolvedOptions): AuthSettings | undefined {
  if (!o.auth) return undefined;
  return { dnsServers: o.dnsServers, lookupTimeout: o.authDnsTimeout, messageTimeout: o.authTimeout, dmarcReject: o.dmarcReject };
}
