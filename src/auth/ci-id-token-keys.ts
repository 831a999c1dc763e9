// One CI ID-token issuer's signing keys: discovery, the JWKS fetched over TLS (optionally a private CA), cached, refreshed on unknown keys.

import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import type * as Jose from 'jose';
import type { FetchImplementation, FlattenedJWSInput, JWTHeaderParameters } from 'jose';
import type { FileLog } from '../config/watched-file.js';
import { endpointProblem } from './ci-id-token-config.js';

/** The issuer's keys could not be had (down, unreachable, untrusted certificate, a bad answer): no token of it can be checked. */
export class IssuerUnavailableError extends Error {
  override readonly name = 'IssuerUnavailableError';
}

export interface IssuerKeysOptions {
  issuer: string;
  /** Configured JWKS URL; without it, discovery's `jwks_uri`. */
  jwksUri: string | undefined;
  /** PEM CA certificates that alone are trusted for this issuer's https endpoints; undefined: the system's. */
  caPem: string | undefined;
  logger: FileLog;
  /** One request's time limit. */
  timeoutMs: number;
  /** Keys are fetched again for an unknown key id at most this often. */
  unknownKeyCooldownMs: number;
  /** Keys older than this are fetched again before use; if that fails, they are not used. */
  maxKeyAgeMs: number;
  /** After a failed fetch, callers are told the issuer is unavailable for this long without a new attempt. */
  failureBackoffMs: number;
}

/** jose, loaded at the first token or probe: only gateways with a CI ID-token provider need it. */
let jose: typeof Jose | undefined;
export async function loadJose(): Promise<typeof Jose> {
  return (jose ??= await import('jose'));
}

/** Discovery documents and key sets are small; a larger answer is refused rather than read. */
const maxResponseBytes = 256 * 1024;

/** Where the keys are looked up before a token's signature is checked. */
export type KeyLookup = (header: JWTHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

type RemoteKeySet = ReturnType<typeof Jose.createRemoteJWKSet>;

export class IssuerKeys {
  readonly #options: IssuerKeysOptions;
  readonly #fetch: FetchImplementation;
  #keySet: RemoteKeySet | undefined;
  /** The configured JWKS URL, until its key set is made (with jose, at the first use). */
  #configuredJwksUri: URL | undefined;
  #discovering: Promise<RemoteKeySet> | undefined;
  #failure: { at: number; message: string } | undefined;

  constructor(options: IssuerKeysOptions) {
    this.#options = options;
    this.#fetch = issuerFetch(options.caPem);
    if (options.jwksUri !== undefined) this.#configuredJwksUri = new URL(options.jwksUri);
  }

  get issuer(): string {
    return this.#options.issuer;
  }

  /** For jose's jwtVerify: the key for this header, or JWKSNoMatchingKey; IssuerUnavailableError when keys cannot be had. */
  readonly lookup: KeyLookup = async (header, token) => {
    const keySet = await this.#usableKeySet();
    try {
      return await keySet(header, token);
    } catch (error) {
      const { errors } = await loadJose();
      // Several keys may fit a header without kid: jose tries each, through the error it threw.
      if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) throw error;
      throw this.#failed(error);
    }
  };

  /** Fetches the keys now (discovery first when needed), for `gateway config check`. */
  async probe(): Promise<{ ok: boolean; detail: string }> {
    try {
      const keySet = (await this.#configuredKeySet()) ?? (await this.#discover());
      await keySet.reload();
      const keys = keySet.jwks()?.keys ?? [];
      const kinds = [...new Set(keys.map((key) => key.alg ?? key.kty ?? '?'))].join(', ');
      this.#failure = undefined;
      return { ok: keys.length > 0, detail: `${this.issuer}: ${keys.length} ${keys.length === 1 ? 'key' : 'keys'}${kinds ? ` (${kinds})` : ''}` };
    } catch (error) {
      return { ok: false, detail: `${this.issuer}: ${describe(error)}` };
    }
  }

  async #usableKeySet(): Promise<RemoteKeySet> {
    const failure = this.#failure;
    if (failure !== undefined && performance.now() - failure.at < this.#options.failureBackoffMs) {
      throw new IssuerUnavailableError(failure.message);
    }
    try {
      return (await this.#configuredKeySet()) ?? (await this.#discover());
    } catch (error) {
      throw this.#failed(error);
    }
  }

  /** The key set made or known so far: for a configured JWKS URL, made at the first call. */
  async #configuredKeySet(): Promise<RemoteKeySet | undefined> {
    if (this.#keySet === undefined && this.#configuredJwksUri !== undefined) {
      const remoteKeySet = await this.#remoteKeySet(this.#configuredJwksUri);
      this.#keySet ??= remoteKeySet;
    }
    return this.#keySet;
  }

  /** One discovery at a time; its result is kept for the life of the process. */
  #discover(): Promise<RemoteKeySet> {
    this.#discovering ??= discoverJwksUri(this.#options.issuer, this.#fetch, this.#options.timeoutMs)
      .then(async (jwksUri) => {
        this.#options.logger.info({ issuer: this.issuer, jwksUri }, 'CI ID-token issuer discovered');
        this.#keySet = await this.#remoteKeySet(new URL(jwksUri));
        return this.#keySet;
      })
      .finally(() => {
        this.#discovering = undefined;
      });
    return this.#discovering;
  }

  async #remoteKeySet(jwksUri: URL): Promise<RemoteKeySet> {
    const { createRemoteJWKSet, customFetch } = await loadJose();
    return createRemoteJWKSet(jwksUri, {
      timeoutDuration: this.#options.timeoutMs,
      cooldownDuration: this.#options.unknownKeyCooldownMs,
      cacheMaxAge: this.#options.maxKeyAgeMs,
      [customFetch]: this.#fetch,
    });
  }

  #failed(error: unknown): IssuerUnavailableError {
    if (error instanceof IssuerUnavailableError) return error;
    const message = `issuer ${this.issuer}: ${describe(error)}`;
    this.#failure = { at: performance.now(), message };
    this.#options.logger.warn({ issuer: this.issuer, err: describe(error) }, 'CI ID-token issuer keys could not be fetched');
    return new IssuerUnavailableError(message);
  }
}

/** `jwks_uri` from the issuer's OpenID discovery document, which must name the same issuer. */
async function discoverJwksUri(issuer: string, fetch: FetchImplementation, timeoutMs: number): Promise<string> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  const response = await fetch(url, {
    method: 'GET',
    redirect: 'manual',
    headers: new Headers({ accept: 'application/json' }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (response.status !== 200) throw new Error(`discovery ${url} answered HTTP ${response.status}`);
  let document: unknown;
  try {
    document = await response.json();
  } catch {
    throw new Error(`discovery ${url} did not answer JSON`);
  }
  const fields = typeof document === 'object' && document !== null ? (document as Record<string, unknown>) : {};
  if (fields.issuer !== issuer) throw new Error(`discovery ${url} names issuer ${JSON.stringify(fields.issuer)}, not ${JSON.stringify(issuer)}`);
  const jwksUri = fields.jwks_uri;
  if (typeof jwksUri !== 'string') throw new Error(`discovery ${url} has no jwks_uri`);
  const problem = endpointProblem(jwksUri, 'jwks');
  if (problem !== undefined) throw new Error(`discovery ${url}: jwks_uri ${problem}`);
  if (new URL(issuer).protocol === 'https:' && new URL(jwksUri).protocol !== 'https:') throw new Error(`discovery ${url}: jwks_uri must be https://`);
  return jwksUri;
}

/**
 * GET over http or https with node's client: no redirects followed, the answer's body read only
 * for 200 and only up to maxResponseBytes, and with `caPem` the only trusted CAs for https.
 */
function issuerFetch(caPem: string | undefined): FetchImplementation {
  return (url, options) =>
    new Promise<Response>((resolve, reject) => {
      const target = new URL(url);
      if (target.protocol !== 'https:' && target.protocol !== 'http:') {
        reject(new Error(`${target.protocol} URLs are not fetched`));
        return;
      }
      const requestOptions: https.RequestOptions = { headers: Object.fromEntries(options.headers.entries()), signal: options.signal, agent: false };
      if (caPem !== undefined) requestOptions.ca = caPem;
      const client = target.protocol === 'https:' ? https : http;
      const request = client.get(target, requestOptions, (response) => {
        const status = response.statusCode ?? 0;
        if (status !== 200) {
          response.resume();
          resolve(new Response(null, { status: status >= 200 && status <= 599 ? status : 502 }));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxResponseBytes) request.destroy(new Error(`${url} answered more than ${maxResponseBytes} bytes`));
          else chunks.push(chunk);
        });
        response.on('end', () => resolve(new Response(Buffer.concat(chunks), { status })));
        response.on('error', reject);
        response.on('close', () => {
          if (!response.complete) reject(new Error(`${url}: the answer was cut short`));
        });
      });
      request.on('error', reject);
    });
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (!(error.cause instanceof Error)) return error.message;
  // "The operation was aborted" with the cause "The operation was aborted due to timeout" says it once.
  return error.cause.message.startsWith(error.message) ? error.cause.message : `${error.message}: ${error.cause.message}`;
}
