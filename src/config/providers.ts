// The YAML `providers:` section: which authenticators join htpasswd and the CI tokens, in which order, each checked at start.

import { ConfigError } from '../errors.js';
import { ciTokensAuthenticatorName, htpasswdAuthenticatorName, reservedAuthenticatorNames } from '../auth/chain.js';
import { describeCiIdTokenProvider, parseCiIdTokenProvider, type CiIdTokenProviderConfig } from '../auth/ci-id-token-config.js';
import { parseLdapProvider, type LdapProviderConfig } from '../auth/ldap-config.js';
import { describeOidcProvider, parseOidcProvider, type OidcProviderConfig } from '../auth/oidc-config.js';
import { ProviderEntry, type ProvidersSource } from './provider-entry.js';

export { providersSource, type ProvidersSource } from './provider-entry.js';

/** `- type: htpasswd` or `- type: ci-tokens`: where a built-in authenticator stands in the chain. */
export interface BuiltInPlace {
  type: typeof htpasswdAuthenticatorName | typeof ciTokensAuthenticatorName;
  name: typeof htpasswdAuthenticatorName | typeof ciTokensAuthenticatorName;
}

export type ProviderConfig = BuiltInPlace | LdapProviderConfig | CiIdTokenProviderConfig | OidcProviderConfig;

/** Each provider type's reader; a new type adds its parser here (and its authenticator in auth/chain-setup.ts). */
const providerTypes: Readonly<Record<string, (entry: ProviderEntry, name: string) => ProviderConfig>> = {
  ldap: parseLdapProvider,
  'ci-id-token': parseCiIdTokenProvider,
  oidc: parseOidcProvider,
};

const builtIns = [ciTokensAuthenticatorName, htpasswdAuthenticatorName] as const;
const namePattern = /^[a-z][a-z0-9-]{0,31}$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readEntry(source: ProvidersSource, index: number, value: unknown): ProviderConfig {
  if (!isRecord(value)) throw new ConfigError(`${source.positionOf([index]) ?? source.file}: providers[${index}]`, 'must be a mapping with a type, e.g. - type: ldap');
  const entry: ProviderEntry = new ProviderEntry(source, index, value);
  const type = entry.text('type');
  const known = [...builtIns, ...Object.keys(providerTypes)];
  if (type === undefined) entry.fail('type', `required: one of ${known.join(', ')}`);
  if ((builtIns as readonly string[]).includes(type)) {
    entry.rejectUnknownKeys();
    return { type: type as BuiltInPlace['type'], name: type as BuiltInPlace['name'] };
  }
  const parse = providerTypes[type];
  if (parse === undefined) entry.fail('type', `unknown provider type ${JSON.stringify(type)}; known: ${known.join(', ')}`);
  const name = entry.text('name', type);
  if (!namePattern.test(name)) entry.fail('name', 'must be 1 to 32 of a-z, 0-9 and -, starting with a letter (log lines and tokens carry it)');
  if (reservedAuthenticatorNames.includes(name)) entry.fail('name', `${JSON.stringify(name)} is taken by a built-in authenticator`);
  const config = parse(entry, name);
  entry.rejectUnknownKeys();
  return config;
}

/**
 * The configured providers in YAML order. The built-ins not placed explicitly come first (CI tokens,
 * then htpasswd), so without a `providers:` section the chain is what it always was.
 */
export function parseProviders(source: ProvidersSource | undefined): ProviderConfig[] {
  if (source === undefined || source.value === null || source.value === undefined) return defaultOrder([]);
  if (!Array.isArray(source.value)) throw new ConfigError(`${source.positionOf([]) ?? source.file}: providers`, 'must be a list, e.g.\n  providers:\n    - type: ldap\n      url: ldaps://ldap.example.com');
  const configs = source.value.map((value, index) => readEntry(source, index, value));
  const seen = new Map<string, number>();
  configs.forEach((config, index) => {
    const earlier = seen.get(config.name);
    if (earlier !== undefined) {
      const key = (builtIns as readonly string[]).includes(config.name) ? 'type' : 'name';
      throw new ConfigError(`${source.positionOf([index, key]) ?? source.file}: providers[${index}].${key}`, `${JSON.stringify(config.name)} is already providers[${earlier}]; give each provider its own name`);
    }
    seen.set(config.name, index);
  });
  return defaultOrder(configs);
}

function defaultOrder(configs: ProviderConfig[]): ProviderConfig[] {
  const missing = builtIns.filter((name) => !configs.some((config) => config.name === name)).map((name): BuiltInPlace => ({ type: name, name }));
  return [...missing, ...configs];
}

/** What `config check` prints for the providers: names, types and where they connect, never a secret. */
export function describeProviders(configs: readonly ProviderConfig[]): Record<string, unknown>[] {
  return configs.map((config) => {
    if (config.type === 'ldap') return { name: config.name, type: config.type, url: config.url, tls: config.tls };
    if (config.type === 'ci-id-token') return describeCiIdTokenProvider(config);
    if (config.type === 'oidc') return describeOidcProvider(config);
    return { name: config.name, type: config.type };
  });
}
