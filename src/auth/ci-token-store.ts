// The CI tokens in force: the watched token file, checked against the users that exist right now.

import { timingSafeEqual } from 'node:crypto';
import type { Access } from '../access/access.js';
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

export interface CiTokenStoreOptions extends WatchedFileOptions {
  users: KnownUsers;
}

/**
 * The tokens of one file. A reload swaps in a fresh set as a whole, so a revoked token is gone at
 * once; a file that goes missing or breaks keeps the last good set (deleting the file revokes
 * nothing: `gateway token revoke` does). A token whose user is not in htpasswd does not work.
 */
export class CiTokenStore extends WatchedFile<LiveSet> {
  readonly #users: KnownUsers;

  constructor(file: string, options: CiTokenStoreOptions) {
    super(file, { label: 'CI tokens file', holds: 'tokens', setting: 'ci_tokens' }, options);
    this.#users = options.users;
  }

  /** A loaded store (a missing file holds no tokens); throws a ConfigError for an unreadable or invalid file. */
  static async load(file: string, options: CiTokenStoreOptions): Promise<CiTokenStore> {
    const store = new CiTokenStore(file, options);
    await store.load();
    return store;
  }

  protected parse(text: string): LiveSet {
    return liveSet(parseTokenFile(text, this.file));
  }

  protected contentWhenMissing(): LiveSet {
    return new Map();
  }

  protected summarize(content: LiveSet): ContentSummary {
    const orphans = new Set([...content.values()].map((token) => token.record.user).filter((user) => !this.#users.has(user)));
    const warnings = [...orphans].map((user) => `CI tokens of user "${user}" do not work: there is no such user in htpasswd`);
    return { fields: { tokens: content.size }, warnings };
  }

  /** Oldest first; copies, so callers cannot change the live set. */
  list(): CiTokenRecord[] {
    return [...this.content.values()].map((token) => orderedRecord(token.record)).sort(byCreation);
  }

  /** The token, while it is in the file, unexpired, and its user exists. */
  #usable(id: string, now: number): LiveToken | undefined {
    const token = this.content.get(id);
    if (token === undefined) return undefined;
    if (token.expiresAt !== null && token.expiresAt <= now) return undefined;
    if (!this.#users.has(token.record.user)) return undefined;
    return token;
  }

  /**
   * The scopes of a token that is still usable, else undefined: access tokens issued for a CI
   * token check this on every request, so revoking it or removing its user takes effect at once.
   */
  activeScopes(id: string, now: number = Date.now()): Access[] | undefined {
    return this.#usable(id, now)?.record.scopes;
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
