// Upstream requests in flight per client address, so one client cannot hold every registry connection.

import { addressGroup } from '../ip-address.js';

/** A place in the share; release() is idempotent, so every way an exchange ends may call it. */
export interface ShareSlot {
  release(): void;
}

/**
 * Counts upstream exchanges per client address group (an IPv4 address, or the /64 of an IPv6
 * address, as login throttling groups them) and refuses one beyond `perClient`. Counts live only
 * while an exchange does, so the map never holds more entries than exchanges in flight.
 */
export class ClientShare {
  readonly #inFlight = new Map<string, number>();

  constructor(readonly perClient: number) {
    if (!Number.isInteger(perClient) || perClient < 1) throw new RangeError('perClient must be a whole number of at least 1');
  }

  /** A slot for this address, or undefined when it already has its share in flight. */
  acquire(address: string): ShareSlot | undefined {
    const key = addressGroup(address);
    const count = this.#inFlight.get(key) ?? 0;
    if (count >= this.perClient) return undefined;
    this.#inFlight.set(key, count + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const left = (this.#inFlight.get(key) ?? 1) - 1;
        if (left <= 0) this.#inFlight.delete(key);
        else this.#inFlight.set(key, left);
      },
    };
  }

  /** Exchanges in flight for this address's group. */
  inFlight(address: string): number {
    return this.#inFlight.get(addressGroup(address)) ?? 0;
  }
}
