// The CI tokens in force: the watched token file, checked against the users that exist right now.

import { timingSafeEqual } from 'node:crypto';
import type { Access, Identity } from '../access/access.js';
import { byCreation, hashSecret, orderedRecord, parseTokenFile, splitCredential, type CiTokenRecord } from './ci-tokens.js';
import { WatchedFile, type ContentSummary, type WatchedFileOptions } from '../config/watched-file.js';

export type CiTokenVerdict = { outcome: 'ok'; record: CiTokenRecord } | { outcome: 'invalid' };

/** Who exists: a CI token works only while its user does (the UserStore, in the gateway). */
export interface KnownUsers {
  has(user: string): boolean;
}

interface LiveToken {
  record: CiTokenRecord;
  secretHash: Buffer;
  /** Milliseconds since the epoch, or null for never. */
  expiresAt: number | null;
}

type LiveSet = ReadonlyMap<string, LiveToken>;

function liveSet(records: readonly CiTokenRecord[]): LiveSet {
  return new Map(
    records.map((record) => [
      record.id,
      {
        record: orderedRecord(record),
        secretHash: Buffer.from(record.secretHash, 'hex'),
        expiresAt: record.expiresAt === null ? null : Date.parse(record.expiresAt),
      },
    ]),
  );
}

const invalid: CiTokenVerdict = Object.freeze({ outcome: 'invalid' });

/** Revocation notices remembered at most (each until the file drops the token). */
const maxRevokedMarks = 10_000;

export interface CiTokenStoreOptions extends WatchedFileOptions {
  users: KnownUsers;
  /**
   * Names of the configured OIDC sign-in providers: a personal access token (source oidc) works only
   * while its provider is configured. Without it, none does.
   */
  signInProviders?: ReadonlySet<string>;
}

/** What a usable token vouches for: its scopes (undefined: the access rules alone decide) and the groups its sign-in gave. */
export interface CiTokenGrant {
  scopeLimit: Access[] | undefined;
  groups: string[] | undefined;
}

export function tokenGrant(record: CiTokenRecord): CiTokenGrant {
  if (record.source !== 'oidc') return { scopeLimit: record.scopes, groups: undefined };
  return { scopeLimit: record.scopes.length === 0 ? undefined : record.scopes, groups: record.groups ?? [] };
}

/** The identity a token stands for: its user, the credential, and its scopes and groups when it has them. */
export function tokenIdentity(user: string, credential: string, grant: CiTokenGrant): Identity {
  const identity: Identity = { user, credential };
  if (grant.scopeLimit !== undefined) identity.scopeLimit = grant.scopeLimit;
  if (grant.groups !== undefined) identity.groups = grant.groups;
  return identity;
}

/**
 * The tokens of one file. A reload swaps in a fresh set as a whole, so a revoked token is gone at
 * once; a file that goes missing or breaks keeps the last good set (deleting the file revokes
 * nothing: `gateway token revoke` does). A CI token whose user is not in htpasswd does not work; a
 * personal access token works while its sign-in provider is configured and no htpasswd user has
 * its user's name (that would be someone else).
 */
export class CiTokenStore extends WatchedFile<LiveSet> {
  readonly #users: KnownUsers;
  readonly #signInProviders: ReadonlySet<string>;
  /** Ids another gateway said were revoked, refused until the file no longer holds them (oldest first). */
  readonly #revoked = new Set<string>();

  constructor(file: string, options: CiTokenStoreOptions) {
    super(file, { label: 'CI tokens file', holds: 'tokens', setting: 'ci_tokens' }, options);
    this.#users = options.users;
    this.#signInProviders = options.signInProviders ?? new Set();
  }

  /** A loaded store (a missing file holds no tokens); throws a ConfigError for an unreadable or invalid file. */
  static async load(file: string, options: CiTokenStoreOptions): Promise<CiTokenStore> {
    const store = new CiTokenStore(file, options);
    await store.load();
    return store;
  }

  protected parse(text: string): LiveSet {
    const tokens = liveSet(parseTokenFile(text, this.file));
    // A token the file no longer holds needs no mark: the file refuses it now, on every gateway that reads it.
    for (const id of this.#revoked) if (!tokens.has(id)) this.#revoked.delete(id);
    return tokens;
  }

  /** Refuses the token from now on, before the file says so (a revocation notice from another gateway). */
  revoke(id: string): void {
    this.#revoked.delete(id);
    this.#revoked.add(id);
    if (this.#revoked.size > maxRevokedMarks) this.#revoked.delete(this.#revoked.values().next().value as string);
  }

  protected contentWhenMissing(): LiveSet {
    return new Map();
  }

  protected summarize(content: LiveSet): ContentSummary {
    const records = [...content.values()].map((token) => token.record);
    const orphans = new Set(records.filter((record) => record.source === undefined && !this.#users.has(record.user)).map((record) => record.user));
    const warnings = [...orphans].map((user) => `CI tokens of user "${user}" do not work: there is no such user in htpasswd`);
    const providers = new Set(records.filter((record) => record.source === 'oidc' && !this.#signInProviders.has(record.provider ?? '')).map((record) => record.provider));
    for (const provider of providers) warnings.push(`personal access tokens of sign-in provider "${provider}" do not work: no such oidc provider is configured`);
    return { fields: { tokens: content.size }, warnings };
  }

  /** Oldest first; copies, so callers cannot change the live set. */
  list(): CiTokenRecord[] {
    return [...this.content.values()].map((token) => orderedRecord(token.record)).sort(byCreation);
  }

  /** The token, while it is in the file, unexpired, and its user exists. */
  #usable(id: string, now: number): LiveToken | undefined {
    const token = this.content.get(id);
    if (token === undefined || this.#revoked.has(id)) return undefined;
    if (token.expiresAt !== null && token.expiresAt <= now) return undefined;
    if (token.record.source === undefined) return this.#users.has(token.record.user) ? token : undefined;
    if (token.record.source !== 'oidc' || token.expiresAt === null) return undefined;
    if (!this.#signInProviders.has(token.record.provider ?? '') || this.#users.has(token.record.user)) return undefined;
    return token;
  }

  /**
   * The scopes of a token that is still usable, else undefined: access tokens issued for a CI
   * token check this on every request, so revoking it or removing its user takes effect at once.
   * Undefined too for a personal access token, which has no scopes of its own: see activeGrant.
   */
  activeScopes(id: string, now: number = Date.now()): Access[] | undefined {
    const token = this.#usable(id, now);
    return token === undefined || token.record.source !== undefined ? undefined : token.record.scopes;
  }

  /** What a still usable token vouches for (scopes, sign-in groups), else undefined; checked like activeScopes. */
  activeGrant(id: string, now: number = Date.now()): CiTokenGrant | undefined {
    const token = this.#usable(id, now);
    return token === undefined ? undefined : tokenGrant(token.record);
  }

  /**
   * Verifies a presented password; undefined when it is not a CI token credential at all (so the
   * caller falls back to htpasswd).
   */
  verify(user: string, credential: string, now: Date = new Date()): CiTokenVerdict | undefined {
    const presented = splitCredential(credential);
    if (presented === undefined) return undefined;
    const token = this.content.get(presented.id);
    if (token === undefined) return invalid;
    if (!timingSafeEqual(hashSecret(presented.secret), token.secretHash)) return invalid;
    if (token.record.user !== user) return invalid;
    if (this.#usable(presented.id, now.getTime()) === undefined) return invalid;
    return { outcome: 'ok', record: orderedRecord(token.record) };
  }
}
