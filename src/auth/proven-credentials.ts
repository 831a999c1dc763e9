// Credentials that were right before, per user, by keyed fingerprint: the login throttle lets them skip the queue.

export interface ProvenCredentialsOptions {
  /** How long credentials count as proven after their last success. */
  forMs: number;
  /** Fingerprints kept per user, the most recently proven. */
  perUser: number;
  /** Users kept, the most recently proven. */
  maxUsers: number;
  now: () => number;
}

/**
 * Holds fingerprints (keyed hashes, never passwords) of credentials that passed a check. Knowing
 * one proves nothing by itself: proven credentials are still checked, only without waiting.
 */
export class ProvenCredentials {
  readonly #options: ProvenCredentialsOptions;
  /** user -> fingerprint -> when it stops counting; least recently proven first at both levels. */
  readonly #byUser = new Map<string, Map<string, number>>();

  constructor(options: ProvenCredentialsOptions) {
    this.#options = options;
  }

  has(user: string, fingerprint: string): boolean {
    const expiresAt = this.#byUser.get(user)?.get(fingerprint);
    if (expiresAt === undefined) return false;
    if (expiresAt > this.#options.now()) return true;
    this.forget(user, fingerprint);
    return false;
  }

  remember(user: string, fingerprint: string): void {
    const { forMs, perUser, maxUsers, now } = this.#options;
    if (forMs === 0 || perUser === 0) return;
    const known = this.#byUser.get(user) ?? new Map<string, number>();
    known.delete(fingerprint);
    known.set(fingerprint, now() + forMs);
    for (const oldest of known.keys()) {
      if (known.size <= perUser) break;
      known.delete(oldest);
    }
    this.#byUser.delete(user);
    this.#byUser.set(user, known);
    for (const oldestUser of this.#byUser.keys()) {
      if (this.#byUser.size <= maxUsers) break;
      this.#byUser.delete(oldestUser);
    }
  }

  forget(user: string, fingerprint: string): void {
    const known = this.#byUser.get(user);
    known?.delete(fingerprint);
    if (known?.size === 0) this.#byUser.delete(user);
  }
}
