// A real OIDC ID-token issuer for tests: discovery and JWKS over HTTP or HTTPS on 127.0.0.1, minting GitHub- and GitLab-shaped tokens.

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK } from 'jose';

export type SigningAlgorithm = 'RS256' | 'ES256';

export interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

export interface MintOptions {
  /** Default: the issuer's own URL. */
  issuer?: string;
  audience?: string | string[];
  /** Seconds from now; negative for a token that has expired. Default 300. */
  expiresIn?: number;
  /** Seconds from now for nbf; default: whatever the claims say (GitHub-shaped claims bring one). */
  notBefore?: number;
  /** Sign with this key instead of the current one (e.g. a key the issuer never published). */
  key?: SigningKey;
  /** Put this kid in the header whatever key signs. */
  kid?: string;
}

export interface JwksIssuerOptions {
  /** Serve HTTPS with this certificate and key (PEM); else plain HTTP. */
  tls?: { cert: string; key: string };
  /** Algorithm of the keys this issuer signs with. Default RS256. */
  alg?: SigningAlgorithm;
  /** Path under the origin, for an issuer URL like https://host/tenant. Default none. */
  basePath?: string;
}

export interface JwksIssuer {
  /** The issuer URL (`iss`), e.g. http://127.0.0.1:41234. */
  readonly url: string;
  readonly jwksUrl: string;
  /** Requests served so far, per endpoint. */
  readonly requests: { discovery: number; jwks: number };
  readonly currentKey: SigningKey;
  /** The published keys' public JWKs. */
  publishedKeys(): JWK[];
  mint(claims: Record<string, unknown>, options?: MintOptions): Promise<string>;
  /** A key that is never published, for "unknown key" tests. */
  strayKey(alg?: SigningAlgorithm): Promise<SigningKey>;
  /** Publishes a new key and signs with it from now on; the old key is dropped from the set. */
  rotate(): Promise<void>;
  /** While set, every endpoint answers this status instead (e.g. 503). */
  failWith(status: number | undefined): void;
  /** The issuer that discovery claims to be (to test a mismatching document). */
  discoveryIssuer: string;
  /** Spaces added to the key set's JSON (to test the size bound). */
  jwksPadding: number;
  /** While true, requests are read and never answered (until close). */
  hang: boolean;
  close(): Promise<void>;
}

let keyCounter = 0;

async function newKey(alg: SigningAlgorithm): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `key-${++keyCounter}-${alg.toLowerCase()}`;
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicKey, jwk };
}

/** The public key as SPKI PEM, as an attacker would download it (for HS256-with-the-public-key tests). */
export async function publicKeyPem(key: SigningKey): Promise<string> {
  return exportSPKI(key.publicKey);
}

export async function startJwksIssuer(options: JwksIssuerOptions = {}): Promise<JwksIssuer> {
  const alg = options.alg ?? 'RS256';
  const basePath = options.basePath ?? '';
  let keys: SigningKey[] = [await newKey(alg)];
  let failure: number | undefined;
  const requests = { discovery: 0, jwks: 0 };

  const handler: http.RequestListener = (req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://placeholder').pathname;
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify(body));
    };
    if (pathname === `${basePath}/.well-known/openid-configuration`) requests.discovery++;
    else if (pathname === `${basePath}/jwks`) requests.jwks++;
    else return send(404, { error: 'not found' });
    if (issuer.hang) return;
    if (failure !== undefined) return send(failure, { error: 'failing on purpose' });
    if (pathname.endsWith('/jwks')) {
      res.writeHead(200, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ keys: keys.map((key) => key.jwk) }) + ' '.repeat(issuer.jwksPadding));
      return;
    }
    return send(200, {
      issuer: issuer.discoveryIssuer,
      jwks_uri: issuer.jwksUrl,
      id_token_signing_alg_values_supported: [alg],
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
    });
  };
  const server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, handler) : http.createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}${basePath}`;

  const issuer: JwksIssuer = {
    url,
    jwksUrl: `${url}/jwks`,
    requests,
    discoveryIssuer: url,
    jwksPadding: 0,
    hang: false,
    get currentKey() {
      return keys[keys.length - 1]!;
    },
    publishedKeys: () => keys.map((key) => key.jwk),
    async mint(claims, mint = {}) {
      const key = mint.key ?? issuer.currentKey;
      const now = Math.floor(Date.now() / 1000);
      const jwt = new SignJWT(claims)
        .setProtectedHeader({ alg: key.alg, kid: mint.kid ?? key.kid, typ: 'JWT' })
        .setIssuer(mint.issuer ?? url)
        .setAudience(mint.audience ?? 'https://registry.example.com')
        .setIssuedAt(now)
        .setExpirationTime(now + (mint.expiresIn ?? 300));
      if (mint.notBefore !== undefined) jwt.setNotBefore(now + mint.notBefore);
      return jwt.sign(key.privateKey);
    },
    strayKey: (strayAlg) => newKey(strayAlg ?? alg),
    async rotate() {
      keys = [await newKey(alg)];
    },
    failWith(status) {
      failure = status;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return issuer;
}

/** Claims as GitHub Actions puts them in a job's ID token (iss, aud, iat, exp come from mint). */
export function githubClaims(repository: string, ref: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const [owner = ''] = repository.split('/');
  const now = Math.floor(Date.now() / 1000);
  return {
    jti: randomUUID(),
    sub: `repo:${repository}:ref:${ref}`,
    ref,
    sha: 'd6a1c5b4e3f2a1908f7e6d5c4b3a29180f7e6d5c',
    repository,
    repository_owner: owner,
    repository_owner_id: '1024',
    repository_id: '4096',
    repository_visibility: 'private',
    run_id: '7800000001',
    run_number: '12',
    run_attempt: '1',
    actor: 'octocat',
    actor_id: '583231',
    workflow: 'build',
    workflow_ref: `${repository}/.github/workflows/build.yml@${ref}`,
    job_workflow_ref: `${repository}/.github/workflows/build.yml@${ref}`,
    event_name: 'push',
    ref_type: 'branch',
    ref_protected: 'true',
    runner_environment: 'github-hosted',
    nbf: now - 5,
    ...extra,
  };
}

/** Claims as GitLab CI puts them in a job's id_tokens entry. */
export function gitlabClaims(projectPath: string, ref: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const namespace = projectPath.slice(0, projectPath.lastIndexOf('/'));
  return {
    jti: randomUUID(),
    sub: `project_path:${projectPath}:ref_type:branch:ref:${ref}`,
    namespace_id: '72',
    namespace_path: namespace,
    project_id: '20',
    project_path: projectPath,
    user_id: '5',
    user_login: 'alice',
    user_email: 'alice@example.com',
    user_access_level: 'developer',
    pipeline_id: '1212',
    pipeline_source: 'push',
    job_id: '4343',
    ref,
    ref_type: 'branch',
    ref_path: `refs/heads/${ref}`,
    ref_protected: 'true',
    runner_id: 1,
    runner_environment: 'self-hosted',
    sha: '714a629c0b401fdce83e847fc9589983fc6f46bc',
    project_visibility: 'private',
    ci_config_ref_uri: `gitlab.example.com/${projectPath}//.gitlab-ci.yml@refs/heads/${ref}`,
    ci_config_sha: '714a629c0b401fdce83e847fc9589983fc6f46bc',
    ...extra,
  };
}
