// `docker login` with the identities teams already have (a directory user, a personal access token from an OIDC sign-in, a CI job's ID token), then skopeo on what docker stored.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '../helpers/acme.js';
import { request, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { githubClaims, startJwksIssuer, type JwksIssuer } from '../helpers/jwks-issuer.js';
import { ldapAccessRules, ldapProviderConfig } from '../helpers/ldap-gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import type { RunningOidcProvider } from '../helpers/oidc-provider.js';
import { freePort } from '../helpers/ports.js';
import { csrfPattern, identityProviderTls, signInConfig, signInThroughGateway, startHttpsProvider } from '../helpers/sign-in.js';
import { skopeoCopy, skopeoInspectDigest } from '../helpers/skopeo.js';
import { startSlapd, type RunningSlapd } from '../helpers/slapd.js';

const dockerCli = (process.env.PATH ?? '').split(':').map((p) => path.join(p, 'docker')).find((p) => existsSync(p));

/** What the gateway answers a client that may not do what it asked, as skopeo reports it. */
const refused = /denied|unauthorized|authentication required/i;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** What docker keeps for a registry in config.json: `auth` is base64(user:password), `identitytoken` a refresh token. */
interface DockerAuthEntry {
  auth?: string;
  identitytoken?: string;
}

/** A docker CLI config folder of its own (DOCKER_CONFIG), so tests never touch ~/.docker. */
class DockerClient {
  constructor(readonly configDir: string) {}

  get authFile(): string {
    return path.join(this.configDir, 'config.json');
  }

  /**
   * `echo SECRET | docker login HOST -u USER --password-stdin`, run client side (there is no engine).
   * docker treats loopback registries as insecure (no certificate check, plain HTTP as a fallback), so
   * no certs.d is needed here; skopeo, which does the pushing and pulling, checks the gateway's CA.
   */
  login(gw: TestGateway, user: string, secret: string): Promise<Run> {
    return new Promise((resolve) => {
      const env = { PATH: process.env.PATH ?? '', DOCKER_CONFIG: this.configDir, HOME: this.configDir };
      const child = execFile(dockerCli!, ['login', gw.host, '-u', user, '--password-stdin'], { env }, (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr }));
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(secret);
    });
  }

  /** The entry docker stored for the host, or undefined when it stored none. */
  async stored(gw: TestGateway): Promise<DockerAuthEntry | undefined> {
    if (!existsSync(this.authFile)) return undefined;
    const config = JSON.parse(await readFile(this.authFile, 'utf8')) as { auths?: Record<string, DockerAuthEntry> };
    return config.auths?.[gw.host];
  }

  /** skopeo reading docker's config.json (containers/image understands its `auth` and `identitytoken`). */
  push(gw: TestGateway, image: TestImage, target: string): Promise<void> {
    return skopeoCopy({ from: image.reference, to: `docker://${gw.host}/${target}`, certDir: gw.certDir, authFile: this.authFile });
  }

  pull(gw: TestGateway, source: string): Promise<string> {
    return skopeoInspectDigest({ image: `docker://${gw.host}/${source}`, certDir: gw.certDir, authFile: this.authFile });
  }
}

const decodedAuth = (entry: DockerAuthEntry | undefined) => Buffer.from(entry?.auth ?? '', 'base64').toString('utf8');

/** The access log's lines for /token so far. */
const tokenRequests = (gw: TestGateway) => gw.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.msg === 'request' && entry.path === '/token');

/** The first /token line logged after the first `seen`, with this status (lines are written as responses finish). */
async function nextTokenRequest(gw: TestGateway, seen: number, status: number): Promise<Record<string, unknown>> {
  const find = () => tokenRequests(gw).slice(seen).find((entry) => entry.status === status);
  await waitFor(`a /token line with status ${status} in the access log`, () => find() !== undefined, 5_000);
  return find()!;
}

/** A docker login that must fail: exit status, docker's words, nothing stored, and the gateway's log saying why. */
async function assertLoginRefused(gw: TestGateway, client: DockerClient, user: string, secret: string, by: string | undefined, reason: RegExp): Promise<void> {
  const seen = tokenRequests(gw).length;
  const run = await client.login(gw, user, secret);
  assert.notEqual(run.code, 0, run.stdout);
  assert.match(run.stderr, /unauthorized: incorrect username or password/);
  assert.equal(await client.stored(gw), undefined, 'docker stores nothing for a refused login');
  const refusal = await nextTokenRequest(gw, seen, 401);
  assert.equal(refusal.authenticator, by);
  assert.match(String(refusal.reason), reason);
  assert.ok(!gw.logLines.some((line) => line.includes(secret)), 'the secret tried is not logged');
}

describe('docker login with directory, OIDC and CI identities', { skip: dockerCli ? false : 'the docker CLI is not on PATH' }, () => {
  let work: string;
  let image: TestImage;
  let clients = 0;
  const newClient = () => new DockerClient(path.join(work, `docker-${++clients}`));
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'docker-login-'));
    image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 16 * 1024 }] });
  });
  after(() => rm(work, { recursive: true, force: true }));

  describe('an LDAP user (rules name directory groups: developers push app/**, ops pull it)', () => {
    let slapd: RunningSlapd;
    let gw: TestGateway;
    before(async () => {
      slapd = await startSlapd();
      gw = await startTestGateway({ auth: 'token', users: { admin: 'admin-password' }, access: ldapAccessRules, config: await ldapProviderConfig(slapd, work, { tls: 'ldaps' }) });
    });
    after(async () => {
      await gw?.close();
      await slapd?.stop();
    });

    test('docker stores a refresh token, never the password; skopeo pushes and pulls with it where the group may, and nowhere else', async () => {
      const alice = newClient();
      const beforeLogin = tokenRequests(gw).length;
      const login = await alice.login(gw, 'alice', 'alice-password');
      assert.equal(login.code, 0, login.stderr);
      assert.match(login.stdout, /Login Succeeded/);
      const asked = await nextTokenRequest(gw, beforeLogin, 200);
      assert.deepEqual([asked.method, asked.user, asked.authenticator], ['GET', 'alice', 'corp'], 'docker logs in with GET /token and Basic credentials, checked by the directory');
      const saved = await alice.stored(gw);
      assert.equal(typeof saved?.identitytoken, 'string', 'an identity token');
      assert.equal(decodedAuth(saved), 'alice:', 'the user name only');
      assert.ok(!(await readFile(alice.authFile, 'utf8')).includes('alice-password'));
      // docker asked for it (offline_token=true); it works as a refresh token in the refresh_token grant, as docker itself would use it.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: saved!.identitytoken!, client_id: 'docker', service: 'registry-gateway', scope: 'repository:app/web:push' });
      const beforeRefresh = tokenRequests(gw).length;
      const refreshed = await request(gw, 'POST', '/token', { headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form.toString() });
      assert.equal(refreshed.status, 200, refreshed.body);
      assert.equal(refreshed.json().scope, 'repository:app/web:push');
      await nextTokenRequest(gw, beforeRefresh, 200);

      const seen = tokenRequests(gw).length;
      await alice.push(gw, image, 'app/web:v1');
      assert.equal(await alice.pull(gw, 'app/web:v1'), image.manifestDigest);
      // With only an identity token to go on, containers/image used the refresh_token grant (POST), never Basic (GET).
      await nextTokenRequest(gw, seen, 200);
      const used = tokenRequests(gw).slice(seen);
      assert.ok(used.every((entry) => entry.method === 'POST' && entry.user === 'alice' && entry.status === 200), JSON.stringify(used));
      await assert.rejects(alice.push(gw, image, 'other/web:v1'), refused);
    });

    test('bob (directory group ops) pulls app/ but may not push; joining developers lets the same stored token push', async () => {
      const bob = newClient();
      const login = await bob.login(gw, 'bob', 'bob-password');
      assert.equal(login.code, 0, login.stderr);
      assert.equal(typeof (await bob.stored(gw))?.identitytoken, 'string');
      assert.equal(await bob.pull(gw, 'app/web:v1'), image.manifestDigest);
      await assert.rejects(bob.push(gw, image, 'app/bob:v1'), refused);
      // A refresh token reads the groups afresh from the directory: no new docker login needed.
      await slapd.addMember('developers', 'bob');
      await bob.push(gw, image, 'app/bob:v1');
      await slapd.deleteUser('bob');
      const seen = tokenRequests(gw).length;
      await assert.rejects(bob.pull(gw, 'app/web:v1'), refused);
      assert.equal((await nextTokenRequest(gw, seen, 401)).reason, 'credential revoked', 'a deleted user\'s refresh token is refused');
    });

    test('a wrong password and an unknown user fail docker login with docker\'s "incorrect username or password"', async () => {
      const wrong = newClient();
      await assertLoginRefused(gw, wrong, 'alice', 'wrong-password', 'corp', /^wrong password$/);
      const unknown = newClient();
      await assertLoginRefused(gw, unknown, 'nobody', 'alice-password', undefined, /^unknown user$/);
    });
  });

  describe('a personal access token from an OIDC sign-in', () => {
    let provider: RunningOidcProvider;
    let gw: TestGateway;
    before(async () => {
      const tls = await identityProviderTls(work);
      const port = await freePort();
      const publicUrl = `https://localhost:${port}`;
      provider = await startHttpsProvider(publicUrl, tls);
      const config = await signInConfig(work, provider, tls.caFile, ['token_ttl: 30d']);
      // alice (group developers) and bob (group ops) exist only at the provider; htpasswd knows admin alone.
      const access = 'groups:\n  developers: []\n  ops: []\nrules:\n  - { groups: [developers], repositories: ["app/**"], actions: [pull, push] }\n  - { groups: [ops], repositories: ["app/**"], actions: [pull] }\n';
      gw = await startTestGateway({ users: { admin: 'admin-password' }, access, config, env: { GATEWAY_LISTEN: `127.0.0.1:${port}`, GATEWAY_PUBLIC_URL: publicUrl } });
    });
    after(async () => {
      await gw?.close();
      await provider?.stop();
    });

    test('docker stores the token itself (no refresh token for it); it pushes and pulls where the sign-in group may, and nowhere else', async () => {
      const { token } = await signInThroughGateway(gw, provider, 'alice', 'alice-password');
      const alice = newClient();
      const login = await alice.login(gw, 'alice', token);
      assert.equal(login.code, 0, login.stderr);
      const saved = await alice.stored(gw);
      assert.equal(saved?.identitytoken, undefined, 'a personal access token is the long-lived credential: no refresh token');
      assert.equal(decodedAuth(saved), `alice:${token}`);
      await alice.push(gw, image, 'app/oidc:v1');
      assert.equal(await alice.pull(gw, 'app/oidc:v1'), image.manifestDigest);
      await assert.rejects(alice.push(gw, image, 'other/oidc:v1'), refused);

      const bob = newClient();
      assert.equal((await bob.login(gw, 'bob', (await signInThroughGateway(gw, provider, 'bob', 'bob-password')).token)).code, 0);
      assert.equal(await bob.pull(gw, 'app/oidc:v1'), image.manifestDigest);
      await assert.rejects(bob.push(gw, image, 'app/bob:v1'), refused);
    });

    test('a revoked token fails docker login, and what docker stored before stops working', async () => {
      const { browser, page, token } = await signInThroughGateway(gw, provider, 'alice', 'alice-password');
      const alice = newClient();
      assert.equal((await alice.login(gw, 'alice', token)).code, 0);
      assert.equal(await alice.pull(gw, 'app/oidc:v1'), image.manifestDigest);
      // Revoked by its owner on the token page, as a user who suspects a leak would.
      const revoked = await browser.post('/login/tokens/revoke', { id: token.slice(4, 16), csrf: csrfPattern.exec(page.body)?.[1] ?? '' });
      assert.equal(revoked.status, 303, revoked.body);
      await assert.rejects(alice.pull(gw, 'app/oidc:v1'), refused);
      const again = newClient();
      await assertLoginRefused(gw, again, 'alice', token, 'ci-tokens', /^invalid CI token$/);
      const forged = newClient();
      await assertLoginRefused(gw, forged, 'alice', `${token.slice(0, -4)}AAAA`, 'ci-tokens', /^invalid CI token$/);
    });
  });

  describe('a CI job with its GitHub-shaped ID token (user ci)', () => {
    let issuer: JwksIssuer;
    let gw: TestGateway;
    before(async () => {
      issuer = await startJwksIssuer();
      const config = `providers:\n  - type: ci-id-token\n    login_users: [ci]\n    issuers:\n      - issuer: ${issuer.url}\n        audience: https://registry.example.com\n        mappings:\n          - claims: { repository: acme/web, ref: refs/heads/main }\n            user: ci-acme-web\n            groups: [ci]\n`;
      const access = 'groups:\n  ci: []\nrules:\n  - { groups: [ci], repositories: ["acme/web"], actions: [pull, push] }\n';
      gw = await startTestGateway({ users: { admin: 'admin-password' }, access, config });
    });
    after(async () => {
      await gw?.close();
      await issuer?.close();
    });

    test('`echo "$ID_TOKEN" | docker login -u ci --password-stdin` stores the token itself; it pushes and pulls only where the mapped group may', async () => {
      const token = await issuer.mint(githubClaims('acme/web', 'refs/heads/main'), { audience: 'https://registry.example.com' });
      const job = newClient();
      const login = await job.login(gw, 'ci', token);
      assert.equal(login.code, 0, login.stderr);
      const saved = await job.stored(gw);
      assert.equal(saved?.identitytoken, undefined, 'an ID token is short-lived on purpose: no refresh token');
      assert.equal(decodedAuth(saved), `ci:${token}`);
      await job.push(gw, image, 'acme/web:v1');
      assert.equal(await job.pull(gw, 'acme/web:v1'), image.manifestDigest);
      await assert.rejects(job.push(gw, image, 'acme/other:v1'), refused);
      const pushed = tokenRequests(gw).filter((entry) => entry.status === 200);
      assert.ok(pushed.length > 0 && pushed.every((entry) => entry.user === 'ci-acme-web'), 'the mapped user acts, not "ci"');
    });

    test('an expired ID token, one from a branch no mapping names, and one for another audience fail docker login', async () => {
      const expired = newClient();
      const old = await issuer.mint(githubClaims('acme/web', 'refs/heads/main'), { audience: 'https://registry.example.com', expiresIn: -120 });
      await assertLoginRefused(gw, expired, 'ci', old, 'ci-id-token', /^ID token expired$/);
      const branch = newClient();
      const feature = await issuer.mint(githubClaims('acme/web', 'refs/heads/feature'), { audience: 'https://registry.example.com' });
      await assertLoginRefused(gw, branch, 'ci', feature, 'ci-id-token', /^claims match no mapping of issuer .*refs\/heads\/feature/);
      const elsewhere = newClient();
      const other = await issuer.mint(githubClaims('acme/web', 'refs/heads/main'), { audience: 'https://other.example.com' });
      await assertLoginRefused(gw, elsewhere, 'ci', other, 'ci-id-token', /^audience not accepted/);
    });
  });
});
