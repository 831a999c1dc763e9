// OpenID Connect sign-in with openid-client: discovery (cached), the authorization URL with PKCE (S256), state and nonce, and the code exchanged for checked claims.

import type * as OpenIdClient from 'openid-client';
import type { OidcProviderConfig } from './oidc-config.js';
import { userFromClaims, type SignedInUser } from './oidc-claims.js';
import { issuerFetch, IssuerUnreachableError, type FetchLike } from './oidc-fetch.js';

/** What the browser must bring back: kept in the signed sign-in cookie, never sent to the provider except as hashes and the state. */
export interface PendingSignIn {
  state: string;
  nonce: string;
  verifier: string;
}

/**
 * Why a sign-in did not finish: `unavailable` (the provider cannot be reached: 503), `failed` (a bad
 * or stale answer: start again, 400), `refused` (the provider or the configuration says no: 403).
 */
export class SignInError extends Error {
  override readonly name = 'SignInError';

  constructor(
    readonly kind: 'unavailable' | 'failed' | 'refused',
    message: string,
  ) {
    super(message);
  }
}

/** How long a discovery document is used before it is fetched again, and how long a failed one is not retried. */
const discoveryTtlMs = 60 * 60 * 1000;
const discoveryRetryMs = 5 * 1000;
const loopbackHosts = new Set(['127.0.0.1', '[::1]', 'localhost']);

/** openid-client, loaded at the first discovery: only gateways with an OpenID provider need it. */
let openIdClient: typeof OpenIdClient | undefined;
async function loadClient(): Promise<typeof OpenIdClient> {
  return (openIdClient ??= await import('openid-client'));
}

function unreachable(error: unknown): boolean {
  for (let cause: unknown = error, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth += 1) {
    if (cause instanceof IssuerUnreachableError || cause.name === 'AbortError' || cause.name === 'TimeoutError') return true;
  }
  return false;
}

/** The message of an error and its causes, for logs (openid-client puts the server's words in the cause). */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  for (let cause: unknown = error, depth = 0; cause instanceof Error && depth < 4; cause = cause.cause, depth += 1) {
    if (!parts.some((part) => part.includes(cause instanceof Error ? cause.message : ''))) parts.push(cause.message);
  }
  return parts.join(': ') || String(error);
}

export interface OidcSignInOptions {
  config: OidcProviderConfig;
  clientSecret: string;
  /** PEM CA bundle for the issuer (the `ca` file's content). */
  caPem: string | undefined;
  /** https://PUBLIC-HOST/login/callback, registered at the provider. */
  redirectUri: string;
  now?: () => number;
}

/** One configured OpenID provider, as the sign-in pages use it. */
export class OidcSignIn {
  readonly config: OidcProviderConfig;
  readonly redirectUri: string;
  readonly #clientSecret: string;
  readonly #fetch: FetchLike;
  readonly #now: () => number;
  #discovered: { configuration: OpenIdClient.Configuration; at: number } | undefined;
  #discovering: Promise<OpenIdClient.Configuration> | undefined;
  #failed: { at: number; error: SignInError } | undefined;

  constructor(options: OidcSignInOptions) {
    this.config = options.config;
    this.redirectUri = options.redirectUri;
    this.#clientSecret = options.clientSecret;
    this.#fetch = issuerFetch(options.caPem);
    this.#now = options.now ?? Date.now;
  }

  get name(): string {
    return this.config.name;
  }

  /** The provider's metadata, fetched at most once an hour; a provider that cannot be reached is not asked again for a few seconds. */
  async #configuration(): Promise<OpenIdClient.Configuration> {
    const now = this.#now();
    if (this.#discovered !== undefined && now - this.#discovered.at < discoveryTtlMs) return this.#discovered.configuration;
    if (this.#failed !== undefined && now - this.#failed.at < discoveryRetryMs) {
      if (this.#discovered !== undefined) return this.#discovered.configuration;
      throw this.#failed.error;
    }
    this.#discovering ??= this.#discover().finally(() => {
      this.#discovering = undefined;
    });
    try {
      return await this.#discovering;
    } catch (error) {
      // An old document still names the right endpoints; the next request tries again.
      if (this.#discovered !== undefined) return this.#discovered.configuration;
      throw error;
    }
  }

  async #discover(): Promise<OpenIdClient.Configuration> {
    const { config } = this;
    const client = await loadClient();
    const auth = config.clientAuth === 'client_secret_post' ? client.ClientSecretPost(this.#clientSecret) : client.ClientSecretBasic(this.#clientSecret);
    const issuer = new URL(config.issuer);
    const options: OpenIdClient.DiscoveryRequestOptions = { [client.customFetch]: this.#fetch, timeout: config.timeoutSeconds };
    // Plain http only for an issuer on this machine (the configuration allows nothing else).
    if (issuer.protocol === 'http:' && loopbackHosts.has(issuer.hostname)) options.execute = [client.allowInsecureRequests];
    try {
      const configuration = await client.discovery(issuer, config.clientId, undefined, auth, options);
      configuration[client.customFetch] = this.#fetch;
      configuration.timeout = config.timeoutSeconds;
      this.#discovered = { configuration, at: this.#now() };
      this.#failed = undefined;
      return configuration;
    } catch (error) {
      const failure = new SignInError('unavailable', `discovery at ${config.issuer} failed: ${describeError(error)}`);
      this.#failed = { at: this.#now(), error: failure };
      throw failure;
    }
  }

  /** Where to send the browser, and what it must bring back. */
  async begin(): Promise<{ url: URL; pending: PendingSignIn }> {
    const configuration = await this.#configuration();
    const client = await loadClient();
    const pending: PendingSignIn = { state: client.randomState(), nonce: client.randomNonce(), verifier: client.randomPKCECodeVerifier() };
    const url = client.buildAuthorizationUrl(configuration, {
      redirect_uri: this.redirectUri,
      scope: this.config.scopes.join(' '),
      code_challenge: await client.calculatePKCECodeChallenge(pending.verifier),
      code_challenge_method: 'S256',
      state: pending.state,
      nonce: pending.nonce,
    });
    return { url, pending };
  }

  /**
   * The provider's answer at the callback (its query string), checked against what the browser
   * brought: state, then the code exchanged with the PKCE verifier, then the ID token's nonce, issuer,
   * audience and times (openid-client), then the claims. Throws a SignInError.
   */
  async complete(query: string, pending: PendingSignIn): Promise<SignedInUser> {
    const configuration = await this.#configuration();
    const client = await loadClient();
    const current = new URL(this.redirectUri);
    current.search = query;
    let claims: Record<string, unknown>;
    try {
      const tokens = await client.authorizationCodeGrant(configuration, current, {
        pkceCodeVerifier: pending.verifier,
        expectedState: pending.state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      });
      claims = { ...(tokens.claims() ?? {}) };
      if ((claims[this.config.usernameClaim] === undefined || claims[this.config.groupsClaim] === undefined) && tokens.access_token && configuration.serverMetadata().userinfo_endpoint) {
        const subject = typeof claims.sub === 'string' ? claims.sub : client.skipSubjectCheck;
        const info = await client.fetchUserInfo(configuration, tokens.access_token, subject);
        // The ID token's own claims win; userinfo only fills in what it lacks.
        claims = { ...info, ...claims };
      }
    } catch (error) {
      if (error instanceof SignInError) throw error;
      if (unreachable(error)) throw new SignInError('unavailable', `${this.config.issuer} cannot be reached: ${describeError(error)}`);
      if (error instanceof client.AuthorizationResponseError) throw new SignInError('refused', `the identity provider answered ${error.error}${error.error_description ? `: ${error.error_description}` : ''}`);
      throw new SignInError('failed', describeError(error));
    }
    const verdict = userFromClaims(this.config, claims);
    if (!verdict.ok) throw new SignInError('refused', verdict.reason);
    return verdict.user;
  }

  /** `gateway config check`: discovery, as a sign-in would fetch it. */
  async probe(): Promise<{ ok: boolean; detail: string }> {
    try {
      const metadata = (await this.#discover()).serverMetadata();
      const pkce = metadata.code_challenge_methods_supported?.includes('S256') ?? false;
      return { ok: true, detail: `discovery ok: authorization ${metadata.authorization_endpoint ?? '?'}, token ${metadata.token_endpoint ?? '?'}${pkce ? ', PKCE S256' : ', PKCE S256 not advertised'}` };
    } catch (error) {
      return { ok: false, detail: describeError(error) };
    }
  }
}
