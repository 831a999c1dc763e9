// The ACME challenges being validated right now: tls-alpn-01 certificates by host name, http-01 answers by token.

import tls from 'node:tls';

/** The ALPN protocol ACME validators offer for tls-alpn-01 (RFC 8737). */
export const ACME_TLS_PROTOCOL = 'acme-tls/1';

/**
 * Held by the gateway for its listeners to read, filled by whoever orders a certificate. Entries
 * live only while a challenge is being validated; nothing here is ever served to a registry client.
 */
export class AcmeChallenges {
  readonly #alpn = new Map<string, tls.SecureContext>();
  readonly #http = new Map<string, string>();

  /** Serves `certPem` (with `keyPem`) to tls-alpn-01 validators asking for `host`. */
  addAlpn(host: string, keyPem: string | Buffer, certPem: string | Buffer): void {
    this.#alpn.set(host.toLowerCase(), tls.createSecureContext({ key: keyPem, cert: certPem }));
  }

  removeAlpn(host: string): void {
    this.#alpn.delete(host.toLowerCase());
  }

  /** Whether any tls-alpn-01 validation is pending: only then do TLS connections get a look at their ClientHello. */
  get alpnPending(): boolean {
    return this.#alpn.size > 0;
  }

  alpnContext(host: string | undefined): tls.SecureContext | undefined {
    return host === undefined ? undefined : this.#alpn.get(host.toLowerCase());
  }

  addHttp(token: string, keyAuthorization: string): void {
    this.#http.set(token, keyAuthorization);
  }

  removeHttp(token: string): void {
    this.#http.delete(token);
  }

  httpAnswer(token: string): string | undefined {
    return this.#http.get(token);
  }

  /** Resolves once the challenges added so far can be answered wherever clients connect (at once here; a cluster primary waits for its workers). */
  published(): Promise<void> {
    return Promise.resolve();
  }
}
