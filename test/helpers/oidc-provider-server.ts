// Child process for tests: an oidc-provider on 127.0.0.1 (https with a given key, or http) with one client, fixed accounts and a form login that auto-consents.
//
// Config: JSON in the OIDC_PROVIDER_CONFIG variable (or argv[2]), see OidcServerConfig. Once serving it
// prints one line `{"issuer":"https://127.0.0.1:PORT"}` on stdout. SIGTERM or SIGINT stops it.
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import Provider, { type Account, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

export interface OidcServerUser {
  username: string;
  password: string;
  email: string;
  name?: string;
  groups: string[];
}

export interface OidcServerClient {
  client_id: string;
  client_secret: string;
  redirect_uris: string[];
  post_logout_redirect_uris?: string[];
}

export interface OidcServerConfig {
  /** 0 (the default) lets the system pick; the issuer carries the port actually bound. */
  port?: number;
  client: OidcServerClient;
  users: OidcServerUser[];
  /** Seconds; oidc-provider's defaults are 1 h for access tokens and ID tokens, 10 min for codes. */
  accessTokenTtl?: number;
  idTokenTtl?: number;
  /** RSA private key as a JWK (with kid) for RS256 ID tokens; made at start when absent. */
  signingKey?: crypto.JsonWebKey & { kid?: string };
  /** Key for oidc-provider's signed cookies; random when absent. */
  cookieKey?: string;
  /** Exit when stdin closes: the parent holds it open, so a crashed test run leaves no provider behind. */
  exitOnStdinEnd?: boolean;
  /** Serve https with this key and certificate (PEM, for 127.0.0.1); plain http without. */
  tls?: { key: string; cert: string };
}

function readConfig(): OidcServerConfig {
  const text = process.env.OIDC_PROVIDER_CONFIG ?? process.argv[2];
  if (text === undefined) throw new Error('oidc-provider-server needs its JSON config in OIDC_PROVIDER_CONFIG or as its first argument');
  return JSON.parse(text) as OidcServerConfig;
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);

function loginPage(uid: string, message: string): string {
  return `<!doctype html>
<html><head><title>Sign in</title></head><body>
<p>${escapeHtml(message)}</p>
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<input name="login" autocomplete="username"> <input name="password" type="password">
<button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort"><button type="submit">Cancel</button></form>
</body></html>
`;
}

async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res: http.ServerResponse, status: number, html: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

async function main(): Promise<void> {
  const config = readConfig();
  const users = new Map(config.users.map((user) => [user.username, user]));

  // Bound first, so the issuer names the real port and no other process can take it in between.
  const server = config.tls === undefined ? http.createServer() : https.createServer({ key: config.tls.key, cert: config.tls.cert });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port ?? 0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('listening socket has no port');
  const issuer = `${config.tls === undefined ? 'http' : 'https'}://127.0.0.1:${address.port}`;

  const signingKey = {
    ...(config.signingKey ?? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' })),
    kid: config.signingKey?.kid ?? crypto.randomBytes(8).toString('hex'),
    alg: 'RS256',
    use: 'sig',
  };

  const findAccount = (_ctx: KoaContextWithOIDC, id: string): Account | undefined => {
    const user = users.get(id);
    if (user === undefined) return undefined;
    return {
      accountId: id,
      claims: () => ({
        sub: id,
        preferred_username: user.username,
        name: user.name ?? user.username,
        email: user.email,
        email_verified: true,
        groups: user.groups,
      }),
    };
  };

  const configuration: Configuration = {
    clients: [{
      client_id: config.client.client_id,
      client_secret: config.client.client_secret,
      redirect_uris: config.client.redirect_uris,
      post_logout_redirect_uris: config.client.post_logout_redirect_uris ?? [],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    // PKCE (S256, the only method oidc-provider 9 accepts) for every client, confidential ones too.
    pkce: { required: () => true },
    scopes: ['openid', 'profile', 'email', 'groups'],
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    // By default scope-requested claims go only to userinfo when an access token is issued; tests read them from the ID token.
    conformIdTokenClaims: false,
    findAccount,
    jwks: { keys: [signingKey] },
    cookies: { keys: [config.cookieKey ?? crypto.randomBytes(32).toString('base64url')] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: {
      AccessToken: config.accessTokenTtl ?? 3600,
      IdToken: config.idTokenTtl ?? 3600,
      AuthorizationCode: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    renderError: (ctx, out) => {
      ctx.type = 'application/json';
      ctx.body = out;
    },
  };
  const provider = new Provider(issuer, configuration);
  const providerCallback = provider.callback();

  /** The consent prompt is answered at once: every scope and claim asked for is granted. */
  async function autoConsent(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    const accountId = details.session?.accountId;
    if (accountId === undefined) throw new Error('consent prompt without a signed-in account');
    const grant = details.grantId === undefined
      ? new provider.Grant({ accountId, clientId: String(details.params.client_id) })
      : await provider.Grant.find(details.grantId);
    if (grant === undefined) throw new Error('grant of this interaction not found');
    const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  async function interaction(req: http.IncomingMessage, res: http.ServerResponse, uid: string, action: string | undefined): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) throw new Error('interaction cookie does not match the URL');
    if (action === undefined && req.method === 'GET') {
      if (details.prompt.name === 'consent') return autoConsent(req, res);
      return send(res, 200, loginPage(uid, 'Sign in'));
    }
    if (action === 'login' && req.method === 'POST') {
      const form = await readForm(req);
      const user = users.get(form.get('login') ?? '');
      const given = Buffer.from(form.get('password') ?? '');
      const expected = Buffer.from(user?.password ?? '');
      if (user === undefined || given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
        return send(res, 401, loginPage(uid, 'Invalid username or password'));
      }
      await provider.interactionFinished(req, res, { login: { accountId: user.username } }, { mergeWithLastSubmission: false });
      return;
    }
    if (action === 'abort' && req.method === 'POST') {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User aborted interaction' }, { mergeWithLastSubmission: false });
      return;
    }
    send(res, 405, 'method not allowed\n');
  }

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const match = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?$/.exec(new URL(req.url ?? '/', issuer).pathname);
    if (match === null) {
      void providerCallback(req, res);
      return;
    }
    interaction(req, res, match[1]!, match[2]).catch((error: unknown) => {
      process.stderr.write(`interaction failed: ${(error as Error).stack ?? String(error)}\n`);
      if (!res.headersSent) send(res, 400, `${escapeHtml((error as Error).message)}\n`);
      else res.end();
    });
  });

  provider.on('server_error', (_ctx: unknown, error: Error) => process.stderr.write(`server_error: ${error.stack ?? error.message}\n`));
  const shutdown = () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  if (config.exitOnStdinEnd) {
    process.stdin.once('end', shutdown);
    process.stdin.resume();
  }
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`oidc-provider-server: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
