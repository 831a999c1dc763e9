// Starts oidc-provider-server.js (a real oidc-provider) as a child process on loopback and signs users in through it with plain HTTP(S) requests.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { OidcServerClient, OidcServerConfig, OidcServerUser } from './oidc-provider-server.js';
import { waitForOutput } from './processes.js';

export type { OidcServerClient, OidcServerUser } from './oidc-provider-server.js';

export interface OidcProviderOptions {
  /** Where the provider may send the browser back with a code: the gateway's callback URL. */
  redirectUris: string[];
  clientId?: string;
  clientSecret?: string;
  postLogoutRedirectUris?: string[];
  /** Replace the default users (alice: developers; bob: ops). */
  users?: OidcServerUser[];
  accessTokenTtl?: number;
  idTokenTtl?: number;
  /** Serve https with this key and certificate, trusting `ca` when signing in; plain http without. */
  tls?: { key: string; cert: string; ca: string };
}

export const DEFAULT_OIDC_USERS: readonly OidcServerUser[] = [
  { username: 'alice', password: 'alice-password', email: 'alice@example.test', name: 'Alice Liddell', groups: ['developers'] },
  { username: 'bob', password: 'bob-password', email: 'bob@example.test', name: 'Bob Builder', groups: ['ops'] },
];

/** The sign-in did not reach the client's redirect URI: wrong password, provider error page, too many hops. */
export class SignInError extends Error {
  constructor(message: string, readonly status: number, readonly url: string, readonly body: string) {
    super(message);
    this.name = 'SignInError';
  }
}

interface StoredCookie {
  name: string;
  value: string;
  path: string;
  expires: number;
}

/**
 * The cookies of one browser for one origin, with Path matching: oidc-provider scopes its
 * interaction cookies to /interaction/UID and /auth/UID, and sending one interaction's cookie to
 * another would resume the wrong one. Domain, Secure and SameSite are not modelled.
 */
export class CookieJar {
  private readonly cookies = new Map<string, StoredCookie>();

  store(requestUrl: URL, setCookieHeaders: string[]): void {
    for (const header of setCookieHeaders) {
      const [pair, ...attributes] = header.split(';').map((part) => part.trim());
      const equals = pair?.indexOf('=') ?? -1;
      if (pair === undefined || equals <= 0) continue;
      const cookie: StoredCookie = { name: pair.slice(0, equals), value: pair.slice(equals + 1), path: defaultPath(requestUrl), expires: Infinity };
      for (const attribute of attributes) {
        const [key = '', value = ''] = attribute.split('=', 2);
        const lower = key.toLowerCase();
        if (lower === 'path' && value.startsWith('/')) cookie.path = value;
        else if (lower === 'max-age') cookie.expires = Date.now() + Number(value) * 1000;
        else if (lower === 'expires' && cookie.expires === Infinity) cookie.expires = Date.parse(value);
      }
      const key = `${cookie.name}\0${cookie.path}`;
      if (cookie.expires <= Date.now()) this.cookies.delete(key);
      else this.cookies.set(key, cookie);
    }
  }

  /** The Cookie header for `url`: longer paths first, as RFC 6265 asks. */
  header(url: URL): string {
    const now = Date.now();
    return [...this.cookies.values()]
      .filter((cookie) => cookie.expires > now && pathMatches(url.pathname, cookie.path))
      .sort((a, b) => b.path.length - a.path.length)
      .map((cookie) => `${cookie.name}=${cookie.value}`)
      .join('; ');
  }
}

interface Answer {
  status: number;
  location: string | null;
  setCookies: string[];
  text: string;
}

/** One request with node's client, so that https trusts exactly the test CA. */
function send(url: URL, options: { method: string; headers: Record<string, string>; body?: string; ca?: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers = { ...options.headers };
    if (options.body !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers['content-length'] = String(Buffer.byteLength(options.body));
    }
    const client = url.protocol === 'https:' ? https : http;
    const request = client.request(url, { method: options.method, headers, agent: false, ...(options.ca === undefined ? {} : { ca: options.ca }) }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const cookies = response.headers['set-cookie'] ?? [];
        resolve({ status: response.statusCode ?? 0, location: response.headers.location ?? null, setCookies: cookies, text: Buffer.concat(chunks).toString('utf8') });
      });
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(options.body);
  });
}

function defaultPath(url: URL): string {
  const slash = url.pathname.lastIndexOf('/');
  return slash <= 0 ? '/' : url.pathname.slice(0, slash);
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

export interface RunningOidcProvider {
  /** http://127.0.0.1:PORT, also the base of /.well-known/openid-configuration. */
  issuer: string;
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  users: readonly OidcServerUser[];
  /**
   * Plays the browser from `authorizationUrl`: follows the provider's redirects, posts the login form
   * when asked, lets the provider auto-consent, and returns the URL it redirects to outside itself
   * (the client's redirect_uri with code and state, or with error=...). Each call is a fresh browser
   * unless `jar` is given, which then carries the provider session from call to call.
   */
  signIn(authorizationUrl: string | URL, username: string, password: string, jar?: CookieJar): Promise<URL>;
  /** Like signIn, but presses Cancel on the login page: returns the redirect with error=access_denied. */
  deny(authorizationUrl: string | URL): Promise<URL>;
  /** Stops the provider but keeps its port and keys: requests are refused until up(). Sessions and codes are lost. */
  down(): Promise<void>;
  up(): Promise<void>;
  output(): string;
  stop(): Promise<void>;
}

const startTimeoutMs = 15_000;
const stopTimeoutMs = 5_000;
const serverScript = fileURLToPath(new URL('./oidc-provider-server.js', import.meta.url));

class OidcProviderProcess implements RunningOidcProvider {
  issuer = '';
  readonly clientId: string;
  readonly clientSecret: string;
  readonly redirectUris: string[];
  readonly users: readonly OidcServerUser[];
  private readonly config: OidcServerConfig;
  private readonly ca: string | undefined;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private log = '';

  constructor(options: OidcProviderOptions, signingKey: crypto.JsonWebKey) {
    this.clientId = options.clientId ?? 'registry-gateway';
    this.clientSecret = options.clientSecret ?? crypto.randomBytes(24).toString('base64url');
    this.redirectUris = options.redirectUris;
    this.users = options.users ?? DEFAULT_OIDC_USERS;
    const client: OidcServerClient = { client_id: this.clientId, client_secret: this.clientSecret, redirect_uris: this.redirectUris };
    if (options.postLogoutRedirectUris) client.post_logout_redirect_uris = options.postLogoutRedirectUris;
    this.config = {
      client,
      users: [...this.users],
      signingKey: { ...signingKey, kid: crypto.randomBytes(8).toString('hex') },
      cookieKey: crypto.randomBytes(32).toString('base64url'),
      exitOnStdinEnd: true,
    };
    if (options.tls !== undefined) this.config.tls = { key: options.tls.key, cert: options.tls.cert };
    this.ca = options.tls?.ca;
    if (options.accessTokenTtl !== undefined) this.config.accessTokenTtl = options.accessTokenTtl;
    if (options.idTokenTtl !== undefined) this.config.idTokenTtl = options.idTokenTtl;
  }

  output(): string {
    return this.log;
  }

  async launch(): Promise<void> {
    // The config travels in the environment, so client secret and passwords stay out of the process list.
    const child = spawn(process.execPath, [serverScript], {
      env: { ...process.env, OIDC_PROVIDER_CONFIG: JSON.stringify(this.config), DEBUG: '' },
      // stdin stays open while this process lives; the child exits when it closes.
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.stdout.on('data', (chunk: Buffer) => { this.log += chunk.toString('utf8'); });
    child.stderr.on('data', (chunk: Buffer) => { this.log += chunk.toString('utf8'); });
    const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
    spawnError.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`oidc-provider-server did not start within ${startTimeoutMs} ms:\n${this.log}`)), startTimeoutMs);
    });
    try {
      const [line] = await Promise.race([waitForOutput(child, 'stdout', /^\{.*\}$/m), spawnError, timeout]);
      const { issuer } = JSON.parse(line) as { issuer: string };
      this.issuer = issuer;
      // Serving for real: the discovery document answers.
      const response = await send(new URL(`${issuer}/.well-known/openid-configuration`), { method: 'GET', headers: {}, ca: this.ca });
      if (response.status !== 200) throw new Error(`discovery answered ${response.status}:\n${this.log}`);
    } finally {
      clearTimeout(timer);
    }
    // After a restart the issuer must stay the same: pin the port.
    this.config.port = Number(new URL(this.issuer).port);
  }

  private async browse(start: string | URL, form: (url: URL) => URLSearchParams | undefined, action: 'login' | 'abort', jar: CookieJar): Promise<URL> {
    const origin = new URL(this.issuer).origin;
    let url = new URL(start);
    let body: URLSearchParams | undefined;
    let submitted = false;
    for (let hop = 0; hop < 20; hop += 1) {
      const headers: Record<string, string> = {};
      const cookie = jar.header(url);
      if (cookie) headers.cookie = cookie;
      const response = await send(url, { method: body ? 'POST' : 'GET', headers, body: body?.toString(), ca: this.ca });
      jar.store(url, response.setCookies);
      const location = response.location;
      if (response.status >= 300 && response.status < 400 && location !== null) {
        const next = new URL(location, url);
        if (next.origin !== origin) return next;
        url = next;
        body = undefined;
        continue;
      }
      const text = response.text;
      const interaction = /^\/interaction\/[A-Za-z0-9_-]+$/.test(url.pathname);
      if (response.status === 200 && interaction && !submitted) {
        const fields = form(url);
        url = new URL(`${url.pathname}/${action}`, url);
        body = fields ?? new URLSearchParams();
        submitted = true;
        continue;
      }
      throw new SignInError(`sign-in stopped at ${url.pathname} with ${response.status}`, response.status, url.href, text.slice(0, 2000));
    }
    throw new SignInError('sign-in took more than 20 redirects', 0, url.href, '');
  }

  signIn(authorizationUrl: string | URL, username: string, password: string, jar = new CookieJar()): Promise<URL> {
    return this.browse(authorizationUrl, () => new URLSearchParams({ login: username, password }), 'login', jar);
  }

  deny(authorizationUrl: string | URL): Promise<URL> {
    return this.browse(authorizationUrl, () => undefined, 'abort', new CookieJar());
  }

  async down(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timedOut = await Promise.race([
      this.exited!.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), stopTimeoutMs).unref()),
    ]);
    if (timedOut) {
      child.kill('SIGKILL');
      await this.exited;
    }
  }

  async up(): Promise<void> {
    const child = this.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) return;
    await this.launch();
  }

  stop(): Promise<void> {
    return this.down();
  }
}

/** An OpenID provider on a fresh loopback port; the caller must stop() it. */
export async function startOidcProvider(options: OidcProviderOptions): Promise<RunningOidcProvider> {
  // Made here and handed over, so a restart (down, up) signs with the same key.
  const { privateKey } = await promisify(crypto.generateKeyPair)('rsa', { modulusLength: 2048 });
  const provider = new OidcProviderProcess(options, privateKey.export({ format: 'jwk' }));
  try {
    await provider.launch();
  } catch (error) {
    await provider.stop();
    throw error;
  }
  return provider;
}
