// Builds the authenticator chain from the configured providers: the built-ins where they stand, each provider with its secrets read.

import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { ProviderConfig } from '../config/providers.js';
import type { FileLog } from '../config/watched-file.js';
import { ConfigError } from '../errors.js';
import type { Authenticator } from './authenticator.js';
import { AuthenticatorChain, type PasswordAuthenticator } from './chain.js';
import { createCiIdTokenAuthenticator, type CiIdTokenProviderConfig } from './ci-id-token.js';
import { CiTokenAuthenticator } from './ci-token-authenticator.js';
import type { CiTokenStore } from './ci-token-store.js';
import type { UserStore } from './htpasswd.js';
import { HtpasswdAuthenticator } from './htpasswd-authenticator.js';
import type { LdapProviderConfig } from './ldap-config.js';
import { LdapAuthenticator } from './ldap.js';

export interface ChainParts {
  users: UserStore;
  ciTokens: CiTokenStore;
  /** htpasswd's bcrypt checks. */
  checker: Authenticator;
  /** See providerFingerprintKey. */
  fingerprintKey: Buffer;
  /** Where providers log what they find out by themselves (an issuer's keys fetched, or not). */
  logger?: FileLog;
}

/** The configured providers, without the built-ins' places. */
type Provider = LdapProviderConfig | CiIdTokenProviderConfig;

// An oidc provider signs users in on the web pages (src/ui/sign-in-setup.ts); its tokens are the CI tokens'.
const isProvider = (config: ProviderConfig): config is Provider => config.type !== 'htpasswd' && config.type !== 'ci-tokens' && config.type !== 'oidc';

/**
 * The key of the fingerprints providers put in tokens (`ldap:<fingerprint>`), derived from the token
 * signing key: stable across restarts, as refresh tokens need, and new whenever that key is.
 */
export function providerFingerprintKey(tokenKeyPem: string): Buffer {
  return createHash('sha256').update('registry-gateway provider credential fingerprints\0').update(tokenKeyPem).digest();
}

async function readSecretFile(file: string, where: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(where, `cannot read ${what} ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
}

/** The service account's password and the CA bundle of an LDAP provider; ConfigErrors name the key. */
export async function readLdapSecrets(config: LdapProviderConfig): Promise<{ bindPassword: string; ca: string | undefined }> {
  const passwordWhere = `${config.where}.bind_password_file`;
  // One line; the line ending an editor adds is not part of the password.
  const bindPassword = (await readSecretFile(config.bindPasswordFile, passwordWhere, 'the service account password file')).replace(/\r?\n$/, '');
  if (bindPassword.length === 0) throw new ConfigError(passwordWhere, `${config.bindPasswordFile} is empty: an empty password would be an unauthenticated bind`);
  if (bindPassword.includes('\n')) throw new ConfigError(passwordWhere, `${config.bindPasswordFile} holds more than one line`);
  if (config.caFile === undefined) return { bindPassword, ca: undefined };
  const caWhere = `${config.where}.ca_file`;
  const ca = await readSecretFile(config.caFile, caWhere, 'the CA bundle');
  try {
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
    createSecureContext({ ca });
  } catch (error) {
    throw new ConfigError(caWhere, `${config.caFile} is not a PEM CA bundle (${(error as Error).message})`);
  }
  return { bindPassword, ca };
}

/** One provider's authenticator, its files read (throws a ConfigError naming the key). */
export async function createProviderAuthenticator(config: Provider, fingerprintKey: Buffer, logger?: FileLog): Promise<PasswordAuthenticator> {
  if (config.type === 'ci-id-token') return createCiIdTokenAuthenticator(config, logger === undefined ? {} : { logger });
  const secrets = await readLdapSecrets(config);
  return new LdapAuthenticator({ config, ...secrets, fingerprintKey });
}

/** The chain in the configured order. */
export async function createAuthenticatorChain(providers: readonly ProviderConfig[], parts: ChainParts): Promise<AuthenticatorChain> {
  const authenticators: PasswordAuthenticator[] = [];
  for (const provider of providers) {
    if (isProvider(provider)) authenticators.push(await createProviderAuthenticator(provider, parts.fingerprintKey, parts.logger));
    else if (provider.type === 'htpasswd') authenticators.push(new HtpasswdAuthenticator(parts.users, parts.checker));
    else if (provider.type === 'ci-tokens') authenticators.push(new CiTokenAuthenticator(parts.ciTokens));
  }
  return new AuthenticatorChain(authenticators);
}

/** For preflight: every provider's files can be read and used (building an authenticator reads them, and contacts nobody). */
export async function checkProviderFiles(providers: readonly ProviderConfig[]): Promise<void> {
  for (const provider of providers.filter(isProvider)) await (await createProviderAuthenticator(provider, randomBytes(32))).close?.();
}

export interface ProbeResult {
  name: string;
  type: string;
  ok: boolean;
  detail: string;
}

/** `gateway config check`: each provider contacted as the gateway would (LDAP: connect, TLS, service account bind, base DN; CI ID tokens: discovery and keys). */
export async function probeProviders(providers: readonly ProviderConfig[]): Promise<ProbeResult[]> {
  const results: ProbeResult[] = [];
  for (const provider of providers.filter(isProvider)) {
    // Probes issue no tokens, so their fingerprints need no lasting key.
    const authenticator = await createProviderAuthenticator(provider, randomBytes(32));
    try {
      const probed = (await authenticator.probe?.()) ?? { ok: true, detail: 'nothing to contact' };
      results.push({ name: provider.name, type: provider.type, ...probed });
    } finally {
      await authenticator.close?.();
    }
  }
  return results;
}

/**
 * At start: each directory contacted once in the background, so a wrong bind DN or an unreachable
 * directory shows in the log before the first login fails. (CI ID-token issuers are fetched when
 * the first token comes; `config check` contacts them.)
 */
export function reportProviders(providers: readonly ProviderConfig[], logger: { info(fields: object, message: string): void; warn(fields: object, message: string): void }): void {
  const directories = providers.filter((provider) => provider.type === 'ldap');
  if (directories.length === 0) return;
  probeProviders(directories).then(
    (results) => {
      for (const result of results) {
        if (result.ok) logger.info({ provider: result.name, detail: result.detail }, 'identity provider reachable');
        else logger.warn({ provider: result.name, detail: result.detail }, 'identity provider cannot be reached: its users get 503 until it can');
      }
    },
    (error: unknown) => logger.warn({ err: (error as Error).message }, 'identity providers could not be checked'),
  );
}
