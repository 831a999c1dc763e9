// ACME in a cluster: the primary orders and passes each challenge to every worker (they hold the port); a worker serves the certificate the primary sends.

import type { AcmeWiring } from '../tls/acme/from-config.js';
import { AcmeChallenges } from '../tls/acme/challenges.js';
import type { AcmeStatus } from '../tls/acme/manager.js';
import type { ChallengeChange, PrimaryMessage } from './messages.js';
import type { CertificateKeeper } from './worker-part.js';

export interface ChallengeShare {
  /** Sends a change to every worker. */
  broadcast(change: ChallengeChange): void;
  /** Resolves once every worker has taken in what was sent before. */
  sync(): Promise<void>;
}

/** The primary's challenges: answered by its own plain-HTTP listener, and passed on to the workers. */
export class ClusterChallenges extends AcmeChallenges {
  readonly #share: ChallengeShare;
  readonly #current = new Map<string, ChallengeChange>();

  constructor(share: ChallengeShare) {
    super();
    this.#share = share;
  }

  override addAlpn(host: string, keyPem: string | Buffer, certPem: string | Buffer): void {
    super.addAlpn(host, keyPem, certPem);
    this.#change(`alpn:${host.toLowerCase()}`, { op: 'add-alpn', host, key: keyPem.toString(), cert: certPem.toString() });
  }

  override removeAlpn(host: string): void {
    super.removeAlpn(host);
    this.#change(`alpn:${host.toLowerCase()}`, { op: 'remove-alpn', host });
  }

  override addHttp(token: string, keyAuthorization: string): void {
    super.addHttp(token, keyAuthorization);
    this.#change(`http:${token}`, { op: 'add-http', token, answer: keyAuthorization });
  }

  override removeHttp(token: string): void {
    super.removeHttp(token);
    this.#change(`http:${token}`, { op: 'remove-http', token });
  }

  /** What a worker starting now must be given: the challenges pending. */
  current(): ChallengeChange[] {
    return [...this.#current.values()];
  }

  override published(): Promise<void> {
    return this.#share.sync();
  }

  #change(key: string, change: ChallengeChange): void {
    if (change.op.startsWith('add')) this.#current.set(key, change);
    else this.#current.delete(key);
    this.#share.broadcast(change);
  }
}

/** Applies one change to a worker's challenges. */
function applyChallenge(challenges: AcmeChallenges, change: ChallengeChange): void {
  switch (change.op) {
    case 'add-alpn':
      return challenges.addAlpn(change.host, change.key, change.cert);
    case 'remove-alpn':
      return challenges.removeAlpn(change.host);
    case 'add-http':
      return challenges.addHttp(change.token, change.answer);
    case 'remove-http':
      return challenges.removeHttp(change.token);
  }
}

type Setup = Extract<PrimaryMessage, { type: 'gateway:setup' }>;

/** A worker's view of the primary's ACME certificate: what it serves, its status, the challenges pending. */
export class AcmeFromPrimary {
  #certificate: { cert: string; key: string } | undefined;
  #status: AcmeStatus | undefined;
  readonly #pending: ChallengeChange[];
  #wiring: AcmeWiring | undefined;

  constructor(setup: Setup) {
    this.#certificate = setup.certificate;
    this.#status = setup.acmeStatus;
    this.#pending = setup.challenges;
  }

  /** Takes the ACME messages among the primary's; false for the others. */
  receive(message: PrimaryMessage): boolean {
    if (message.type === 'gateway:certificate') {
      this.#certificate = { cert: message.cert, key: message.key };
      this.#wiring?.install(message.cert, message.key);
      return true;
    }
    if (message.type === 'gateway:acme-status') {
      this.#status = message.status;
      return true;
    }
    if (message.type === 'gateway:challenge') {
      if (this.#wiring) applyChallenge(this.#wiring.challenges, message.change);
      else this.#pending.push(message.change);
      return true;
    }
    return false;
  }

  /** The gateway's certificate keeper: installs what the primary sends, orders and reads nothing itself. */
  keeper(wiring: AcmeWiring, domains: readonly string[]): CertificateKeeper {
    this.#wiring = wiring;
    for (const change of this.#pending.splice(0)) applyChallenge(wiring.challenges, change);
    return {
      loadFromDisk: async () => {
        if (this.#certificate) wiring.install(this.#certificate.cert, this.#certificate.key);
        return this.#certificate !== undefined;
      },
      begin: () => undefined,
      // The primary reads certs/acme again on SIGHUP and sends what it serves.
      reload: async () => undefined,
      status: () => this.#status ?? { state: 'waiting', domains },
      checkNow: async () => undefined,
      stop: async () => {
        this.#wiring = undefined;
      },
    };
  }
}
