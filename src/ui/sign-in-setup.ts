// The OIDC sign-in from the configuration: the one oidc provider, its secret and CA read, its discovery probed for config check.

import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { OidcProviderConfig } from '../auth/oidc-config.js';
import { OidcSignIn } from '../auth/oidc-sign-in.js';
import type { Config } from '../config/config.js';
import type { ProviderConfig } from '../config/providers.js';
import { settingName } from '../config/settings.js';
import { ConfigError } from '../errors.js';

export const callbackPath = '/login/callback';

/** The configured oidc provider; a second one is refused (one sign-in page, one provider). */
export function signInProviderOf(providers: readonly ProviderConfig[] | undefined): OidcProviderConfig | undefined {
  const oidc = (providers ?? []).filter((provider): provider is OidcProviderConfig => provider.type === 'oidc');
  if (oidc.length > 1) throw new ConfigError(oidc[1]!.where, `only one provider of type oidc is supported (${oidc[0]!.where} is the first)`);
  return oidc[0];
}

async function readConfigFile(file: string, where: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(where, `cannot read ${what} ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
}

/** The client secret (one line) and the issuer's CA bundle; ConfigErrors name the key. */
export async function readSignInSecrets(config: OidcProviderConfig): Promise<{ clientSecret: string; caPem: string | undefined }> {
  const secretWhere = `${config.where}.client_secret_file`;
  const clientSecret = (await readConfigFile(config.clientSecretFile, secretWhere, 'the client secret file')).replace(/\r?\n$/, '');
  if (clientSecret.length === 0) throw new ConfigError(secretWhere, `${config.clientSecretFile} is empty`);
  if (clientSecret.includes('\n')) throw new ConfigError(secretWhere, `${config.clientSecretFile} holds more than one line`);
  if (config.caFile === undefined) return { clientSecret, caPem: undefined };
  const caWhere = `${config.where}.ca`;
  const caPem = await readConfigFile(config.caFile, caWhere, 'the CA bundle');
  try {
    if (!caPem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
    createSecureContext({ ca: caPem });
  } catch (error) {
    throw new ConfigError(caWhere, `${config.caFile} is not a PEM CA bundle (${(error as Error).message})`);
  }
  return { clientSecret, caPem };
}

/** The sign-in of the configured oidc provider, its files read; undefined without one. Needs public_url (the callback registered at the provider). */
export async function createOidcSignIn(config: Readonly<Config>): Promise<OidcSignIn | undefined> {
  const provider = signInProviderOf(config.providers);
  if (provider === undefined) return undefined;
  if (config.publicUrl === undefined) {
    throw new ConfigError(settingName('public_url'), `required with an oidc provider (${provider.where}): the provider sends browsers back to PUBLIC_URL${callbackPath}`);
  }
  const secrets = await readSignInSecrets(provider);
  return new OidcSignIn({ config: provider, ...secrets, redirectUri: new URL(callbackPath, config.publicUrl).href });
}

/** For preflight: the oidc provider's files can be read, and public_url is set. Contacts nobody. */
export async function checkSignInFiles(config: Readonly<Config>): Promise<void> {
  await createOidcSignIn(config);
}

/** `gateway config check`: the oidc provider's discovery, as a sign-in would fetch it. */
export async function probeSignIn(config: Readonly<Config>): Promise<{ name: string; type: string; ok: boolean; detail: string }[]> {
  const signIn = await createOidcSignIn(config);
  if (signIn === undefined) return [];
  return [{ name: signIn.name, type: 'oidc', ...(await signIn.probe()) }];
}

/** Names of the configured oidc providers: their personal access tokens work, others' do not. */
export function signInProviderNames(providers: readonly ProviderConfig[] | undefined): Set<string> {
  return new Set((providers ?? []).filter((provider) => provider.type === 'oidc').map((provider) => provider.name));
}
