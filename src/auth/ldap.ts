// LDAP / Active Directory as a member of the authenticator chain: service-account search, user bind, groups mapped to access groups.

import { createHmac } from 'node:crypto';
import type { Entry } from 'ldapts';
import type { Identity } from '../access/access.js';
import { RegistryError } from '../errors.js';
import { credentialPrefixOf, type AuthAnswer, type PasswordAuthenticator, type PresentedPassword, type TokenUse } from './chain.js';
import { FairQueue } from './fair-queue.js';
import type { LdapProviderConfig } from './ldap-config.js';
import { attributeValues, DirectorySession, DirectoryUnavailable, TooManyEntries } from './ldap-directory.js';
import { fillFilter, firstRdnValue } from './ldap-filter.js';

export interface LdapAuthenticatorOptions {
  config: LdapProviderConfig;
  /** The service account's password (from bind_password_file). */
  bindPassword: string;
  /** PEM of ca_file, when set. */
  ca: string | undefined;
  /** Keys the credential fingerprints tokens carry; the same across restarts, or refresh tokens die with each. */
  fingerprintKey: Buffer;
}

/** A user name the directory is never asked about: longer than any real one, or with control characters. */
const maxUserNameLength = 256;
const maxPasswordBytes = 1024;
/** A user with more groups than this is refused rather than given a partial list (a deny rule might name a missing one). */
const maxGroups = 1000;
/** Groups of recent logins, so access tokens of directory users see them too (catalog filtering). */
const maxRememberedGroups = 10_000;

/** Attributes read with the user's entry besides the name and groups: identity of the entry, password changes, AD's disabled flag. */
const entryIdAttributes = ['entryUUID', 'objectGUID'];
const passwordChangeAttributes = ['pwdChangedTime', 'pwdLastSet'];
const adAccountControl = 'userAccountControl';
const adAccountDisabled = 0x2;

type Lookup = { kind: 'found'; identity: Identity; dn: string } | { kind: 'absent' } | { kind: 'refused'; reason: string };

function usableName(name: string): boolean {
  return name.length > 0 && name.length <= maxUserNameLength && !/[\p{Cc}\p{Cf}]/u.test(name);
}

/**
 * Asks the directory with a service account: the user's entry (not found: not mine), then the user's
 * own bind with the password. An empty password is refused before anything is sent. A directory that
 * cannot be reached answers unavailable, so htpasswd users keep working. Conversations run a few at a
 * time, taking turns between client addresses like the bcrypt checks.
 */
export class LdapAuthenticator implements PasswordAuthenticator {
  readonly name: string;
  readonly refreshable = true;
  readonly #config: LdapProviderConfig;
  readonly #options: LdapAuthenticatorOptions;
  readonly #queue: FairQueue;
  readonly #groupsByCredential = new Map<string, readonly string[]>();

  constructor(options: LdapAuthenticatorOptions) {
    this.#options = options;
    this.#config = options.config;
    this.name = options.config.name;
    this.#queue = new FairQueue({
      concurrency: options.config.maxConnections,
      maxWaiting: 256,
      maxWaitingPerSource: 16,
      refusal: () => new RegistryError('TOOMANYREQUESTS', 'too many directory logins are waiting; try again shortly'),
    });
  }

  async authenticate({ user, password, source }: PresentedPassword): Promise<AuthAnswer> {
    if (password.length === 0) return { kind: 'no', reason: 'empty password' };
    if (Buffer.byteLength(password, 'utf8') > maxPasswordBytes) return { kind: 'no', reason: 'password too long' };
    if (!usableName(user)) return { kind: 'not-mine' };
    try {
      const found = await this.#queue.run(source, () => this.#converse((session) => this.#logIn(session, user, password)));
      if (found.kind === 'absent') return { kind: 'not-mine' };
      if (found.kind === 'refused') return { kind: 'no', reason: found.reason };
      return { kind: 'yes', identity: found.identity };
    } catch (error) {
      if (error instanceof DirectoryUnavailable) return { kind: 'unavailable', reason: error.message };
      throw error;
    }
  }

  /**
   * Access tokens are trusted until they expire (token_ttl), with the groups of the user's last login;
   * a refresh token is checked with a fresh directory lookup: the user must still be found, as the
   * same entry, with groups read again.
   */
  revalidate(identity: { user: string; credential: string }, use: TokenUse = 'access-token'): Identity | undefined | Promise<Identity | undefined> {
    if (!identity.credential.startsWith(credentialPrefixOf(this.name))) return undefined;
    if (use === 'access-token') {
      const groups = this.#groupsByCredential.get(identity.credential);
      return { user: identity.user, credential: identity.credential, ...(groups === undefined ? {} : { groups }) };
    }
    return this.#refresh(identity.user, identity.credential);
  }

  /** Within basic_cache_ttl a login is trusted as the directory answered it. */
  remembered(identity: Identity): Identity | undefined {
    return identity;
  }

  async probe(): Promise<{ ok: boolean; detail: string }> {
    const { config } = this.#options;
    try {
      const detail = await this.#converse(async (session) => {
        const found = await session.search(config.userBaseDn, { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'], maxEntries: 1 });
        if (found.length === 0) throw new DirectoryUnavailable(`user_base_dn ${config.userBaseDn} is not visible to the service account`);
        return `${config.url} (${config.tls === 'none' ? 'no TLS' : config.tls}): bound as ${config.bindDn}; user_base_dn ${config.userBaseDn} found`;
      });
      return { ok: true, detail };
    } catch (error) {
      if (error instanceof DirectoryUnavailable || error instanceof TooManyEntries) return { ok: false, detail: `${config.url}: ${error.message}` };
      throw error;
    }
  }

  async #refresh(user: string, credential: string): Promise<Identity | undefined> {
    try {
      const found = await this.#queue.run('refresh tokens', () => this.#converse((session) => this.#lookUp(session, user)));
      if (found.kind !== 'found' || found.identity.user !== user || found.identity.credential !== credential) return undefined;
      this.#rememberGroups(found.identity);
      return found.identity;
    } catch (error) {
      if (error instanceof DirectoryUnavailable) throw new RegistryError('UNAVAILABLE', `${this.name} unavailable: ${error.message}`).withHeader('Retry-After', '10');
      throw error;
    }
  }

  /** Opens a session bound as the service account, runs `work`, closes it. */
  async #converse<T>(work: (session: DirectorySession) => Promise<T>): Promise<T> {
    const { config, bindPassword, ca } = this.#options;
    const session = await DirectorySession.open({ url: config.url, tls: config.tls, ca, timeoutMs: config.timeoutSeconds * 1000 });
    try {
      if (!(await session.bind(config.bindDn, bindPassword))) throw new DirectoryUnavailable(`the directory refused the service account ${config.bindDn} (check bind_dn and bind_password_file)`);
      return await work(session);
    } finally {
      await session.close();
    }
  }

  async #logIn(session: DirectorySession, user: string, password: string): Promise<Lookup> {
    const found = await this.#lookUp(session, user);
    if (found.kind !== 'found') return found;
    if (!(await session.bind(found.dn, password))) return { kind: 'refused', reason: 'wrong password' };
    this.#rememberGroups(found.identity);
    return found;
  }

  /** The user's entry and groups, read as the service account. */
  async #lookUp(session: DirectorySession, user: string): Promise<Lookup> {
    const config = this.#config;
    const searchMode = config.groupBaseDn !== undefined;
    const attributes = [config.userAttribute, ...entryIdAttributes, ...passwordChangeAttributes, adAccountControl, ...(searchMode ? [] : [config.groupAttribute])];
    let entries: Entry[];
    try {
      entries = await session.search(config.userBaseDn, { scope: config.userScope, filter: fillFilter(config.userFilter, { user }), attributes, maxEntries: 1, binary: ['objectGUID'] });
    } catch (error) {
      if (error instanceof TooManyEntries) return { kind: 'refused', reason: 'the name matches more than one directory entry' };
      throw error;
    }
    const entry = entries[0];
    if (entry === undefined) return { kind: 'absent' };
    const control = Number(attributeValues(entry, adAccountControl)[0] ?? 0);
    if ((control & adAccountDisabled) !== 0) return { kind: 'refused', reason: 'account disabled in the directory' };
    const name = canonicalName(attributeValues(entry, config.userAttribute), user);
    if (name === undefined) return { kind: 'refused', reason: `the directory entry has no single ${config.userAttribute}` };
    let directoryGroups: (string | undefined)[];
    try {
      directoryGroups = searchMode ? await this.#searchGroups(session, entry.dn, name) : attributeValues(entry, config.groupAttribute).map((dn) => firstRdnValue(dn));
      // Active Directory sends a long multi-valued attribute in ranges (memberOf;range=0-1499): never read as "no groups".
      const ranged = !searchMode && Object.keys(entry).some((key) => key.toLowerCase().startsWith(`${config.groupAttribute.toLowerCase()};range=`));
      if (ranged || directoryGroups.length > maxGroups) throw new TooManyEntries('too many');
    } catch (error) {
      if (error instanceof TooManyEntries) return { kind: 'refused', reason: `too many directory groups to read them all (at most ${maxGroups})` };
      throw error;
    }
    const credential = `${credentialPrefixOf(this.name)}${this.#fingerprint(entry)}`;
    const groups = this.#mapGroups(directoryGroups.filter((group): group is string => group !== undefined));
    return { kind: 'found', dn: entry.dn, identity: { user: name, credential, groups } };
  }

  async #searchGroups(session: DirectorySession, dn: string, user: string): Promise<(string | undefined)[]> {
    const config = this.#config;
    const entries = await session.search(config.groupBaseDn!, { scope: 'sub', filter: fillFilter(config.groupFilter, { dn, user }), attributes: [config.groupNameAttribute], maxEntries: maxGroups });
    return entries.map((entry) => attributeValues(entry, config.groupNameAttribute)[0]);
  }

  /** Directory group names to access groups: the map's entries (ignoring case), others kept by name or ignored. */
  #mapGroups(directoryGroups: string[]): string[] {
    const groups = new Set<string>();
    for (const group of directoryGroups) {
      const mapped = this.#config.groupMap.get(group.toLowerCase());
      if (mapped !== undefined) for (const target of mapped) groups.add(target);
      else if (this.#config.unmappedGroups === 'keep') groups.add(group);
    }
    return [...groups].sort();
  }

  /** Stands for the directory entry (and its last password change, where the directory records one), keyed so that tokens do not show the DN. */
  #fingerprint(entry: Entry): string {
    const id = entryIdAttributes.map((attribute) => attributeValues(entry, attribute)[0] ?? '').join('');
    const changed = passwordChangeAttributes.map((attribute) => attributeValues(entry, attribute)[0] ?? '').join('');
    return createHmac('sha256', this.#options.fingerprintKey).update(JSON.stringify([this.name, entry.dn.toLowerCase(), id, changed])).digest('base64url').slice(0, 32);
  }

  /** The groups access tokens of this entry are checked with, from its last login or refresh. */
  #rememberGroups({ credential, groups }: Identity): void {
    if (credential === undefined) return;
    this.#groupsByCredential.delete(credential);
    this.#groupsByCredential.set(credential, Object.freeze([...(groups ?? [])]));
    for (const oldest of this.#groupsByCredential.keys()) {
      if (this.#groupsByCredential.size <= maxRememberedGroups) break;
      this.#groupsByCredential.delete(oldest);
    }
  }
}

/**
 * The gateway's name for the user: the entry's value that matches the name typed (ignoring case, so
 * "ALICE" and "alice" are one user to the rules), else its only value (a login by another attribute).
 */
function canonicalName(values: string[], presented: string): string | undefined {
  const usable = values.filter(usableName);
  const matching = usable.find((value) => value.toLowerCase() === presented.toLowerCase());
  if (matching !== undefined) return matching;
  return usable.length === 1 ? usable[0] : undefined;
}
