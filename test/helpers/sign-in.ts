// For OIDC sign-in tests: an identity provider over HTTPS with its own CA, the gateway's oidc provider entry, and a browser (cookie jar) for the gateway's pages.

import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createCertificates } from '../../src/tls/certs.js';
import { request, type RawResponse, type TestGateway } from './gateway.js';
import { CookieJar, startOidcProvider, type OidcProviderOptions, type RunningOidcProvider } from './oidc-provider.js';

export interface IdentityProviderTls {
  key: string;
  cert: string;
  ca: string;
  caFile: string;
}

/** A CA and a certificate for 127.0.0.1 made in `dir`, so the provider is reached over verified https. */
export async function identityProviderTls(dir: string): Promise<IdentityProviderTls> {
  const files = await createCertificates({ dir: path.join(dir, 'idp-certs'), caDir: path.join(dir, 'idp-ca'), hosts: ['127.0.0.1'] });
  const [key, cert, ca] = await Promise.all([readFile(files.serverKey, 'utf8'), readFile(files.serverCert, 'utf8'), readFile(files.caCert, 'utf8')]);
  return { key, cert, ca, caFile: files.caCert };
}

/** The provider, registered with the gateway's callback at `publicUrl`. */
export function startHttpsProvider(publicUrl: string, tls: IdentityProviderTls, options: Partial<OidcProviderOptions> = {}): Promise<RunningOidcProvider> {
  return startOidcProvider({ ...options, redirectUris: [`${publicUrl}/login/callback`], tls: { key: tls.key, cert: tls.cert, ca: tls.ca } });
}

/** A settings file with the oidc provider entry (absolute paths); its client secret goes into a file in `dir`. */
export async function signInConfig(dir: string, provider: RunningOidcProvider, caFile: string, extra: string[] = []): Promise<string> {
  const secretFile = path.join(dir, 'oidc-client-secret');
  await writeFile(secretFile, `${provider.clientSecret}\n`, { mode: 0o600 });
  return [
    'providers:',
    '  - type: oidc',
    '    name: sso',
    `    issuer: ${provider.issuer}`,
    `    ca: ${caFile}`,
    `    client_id: ${provider.clientId}`,
    `    client_secret_file: ${secretFile}`,
    '    scopes: [openid, profile, email, groups]',
    '    timeout: 5',
    ...extra.map((line) => `    ${line}`),
    '',
  ].join('\n');
}

/** One browser on the gateway's origin: keeps its cookies, sends them back, and reads the pages. */
export class GatewayBrowser {
  readonly jar = new CookieJar();
  /** Every Set-Cookie line the gateway sent, in order. */
  readonly setCookies: string[] = [];

  constructor(private readonly gw: TestGateway) {}

  async get(target: string, headers: Record<string, string> = {}): Promise<RawResponse> {
    return this.#send('GET', target, headers);
  }

  async post(target: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<RawResponse> {
    const body = new URLSearchParams(form).toString();
    return this.#send('POST', target, { 'content-type': 'application/x-www-form-urlencoded', origin: this.gw.url, 'sec-fetch-site': 'same-origin', ...headers }, body);
  }

  cookieHeader(target = '/login'): string {
    return this.jar.header(new URL(target, this.gw.url));
  }

  async #send(method: string, target: string, headers: Record<string, string>, body?: string): Promise<RawResponse> {
    const cookie = this.cookieHeader(target);
    const all = { ...(cookie && headers.cookie === undefined ? { cookie } : {}), ...headers };
    const res = await request(this.gw, method, target, { headers: all, ...(body === undefined ? {} : { body }) });
    const header = res.headers['set-cookie'] ?? [];
    const set = Array.isArray(header) ? header : [header];
    this.setCookies.push(...set);
    this.jar.store(new URL(target, this.gw.url), set);
    return res;
  }
}

export const tokenPattern = /value="(gwt_[a-z2-7]{12}_[A-Za-z0-9_-]{43})"/;
export const csrfPattern = /name="csrf" value="([A-Za-z0-9_-]+)"/;

export interface SignedIn {
  browser: GatewayBrowser;
  page: RawResponse;
  token: string;
  /** Where the provider sent the browser back: the callback with code and state. */
  callback: URL;
}

/** /login in a fresh browser, the provider's form, then the callback: the page and the token it shows. */
export async function signInThroughGateway(gw: TestGateway, provider: RunningOidcProvider, user: string, password: string): Promise<SignedIn> {
  const browser = new GatewayBrowser(gw);
  const start = await browser.get('/login');
  if (start.status !== 303 || typeof start.headers.location !== 'string') throw new Error(`/login answered ${start.status}: ${start.body}`);
  const callback = await provider.signIn(start.headers.location, user, password);
  const page = await browser.get(`${callback.pathname}${callback.search}`);
  const token = tokenPattern.exec(page.body)?.[1];
  if (page.status !== 200 || token === undefined) throw new Error(`the callback answered ${page.status}: ${page.body.slice(0, 500)}`);
  return { browser, page, token, callback };
}
