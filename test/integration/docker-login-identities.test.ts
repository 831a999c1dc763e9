// `docker login` with the identities teams already have: a directory (LDAP) user, a personal access token from an OIDC sign-in, and a CI job's ID token.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { githubClaims, startJwksIssuer, type JwksIssuer } from '../helpers/jwks-issuer.js';
import { ldapAccessRules, ldapProviderConfig } from '../helpers/ldap-gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import type { RunningOidcProvider } from '../helpers/oidc-provider.js';
import { freePort } from '../helpers/ports.js';
import { identityProviderTls, signInConfig, signInThroughGateway, startHttpsProvider } from '../helpers/sign-in.js';
import { skopeoCopy } from '../helpers/skopeo.js';
import { startSlapd, type RunningSlapd } from '../helpers/slapd.js';

const dockerCli = (process.env.PATH ?? '').split(':').map((p) => path.join(p, 'docker')).find((p) => existsSync(p));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `docker login HOST -u USER --password-stdin` with a config folder of its own; docker verifies the gateway with the CA in certs.d. */
async function dockerLogin(gw: TestGateway, configDir: string, user: string, secret: string): Promise<Run> {
  await mkdir(path.join(configDir, 'certs.d', gw.host), { recursive: true });
  const { writeFile } = await import('node:fs/promises');
  await writeFile(path.join(configDir, 'certs.d', gw.host, 'ca.crt'), gw.ca);
  return new Promise((resolve) => {
    const child = execFile(dockerCli!, ['login', gw.host, '-u', user, '--password-stdin'], { env: { PATH: process.env.PATH ?? '', DOCKER_CONFIG: configDir, HOME: configDir } }, (error, stdout, stderr) =>
      resolve({ code: error ? 1 : 0, stdout, stderr }),
    );
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(secret);
  });
}

/** What docker stored for the host: an identity token (a refresh token) or the password itself. */
async function stored(configDir: string, host: string): Promise<{ identitytoken?: string; auth?: string }> {
  const config = JSON.parse(await readFile(path.join(configDir, 'config.json'), 'utf8')) as { auths: Record<string, { identitytoken?: string; auth?: string }> };
  return config.auths[host] ?? {};
}

/** skopeo with the auth file docker wrote (containers/image reads docker's config.json). */
function push(gw: TestGateway, image: TestImage, configDir: string, target: string): Promise<void> {
  return skopeoCopy({ from: image.reference, to: `docker://${gw.host}/${target}`, certDir: gw.certDir, authFile: path.join(configDir, 'config.json') });
}

describe('docker login with directory, OIDC and CI identities', { skip: dockerCli ? false : 'the docker CLI is not on PATH' }, () => {
  let work: string;
  let image: TestImage;
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'docker-login-'));
    image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 16 * 1024 }] });
  });
  after(() => rm(work, { recursive: true, force: true }));

  describe('an LDAP user', () => {
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

    test('logs in (docker keeps a refresh token, not the password), pushes where the directory group may, and a wrong password is refused', async () => {
      const config = path.join(work, 'docker-ldap');
      const good = await dockerLogin(gw, config, 'alice', 'alice-password');
      assert.equal(good.code, 0, good.stderr);
      assert.match(good.stdout, /Login Succeeded/);
      const saved = await stored(config, gw.host);
      assert.equal(typeof saved.identitytoken, 'string', 'a refresh token');
      assert.ok(!JSON.stringify(saved).includes('alice-password'));
      await push(gw, image, config, 'app/web:v1');
      const bobConfig = path.join(work, 'docker-ldap-bob');
      assert.equal((await dockerLogin(gw, bobConfig, 'bob', 'bob-password')).code, 0);
      const refusal = await push(gw, image, bobConfig, 'app/bob:v1').then(() => 'pushed', (error: Error) => error.message);
      await new Promise((r) => setTimeout(r, 300));
      assert.match(refusal, /denied|unauthorized|authentication required/i, gw.logLines.slice(-4).join('\n'));
      const bad = await dockerLogin(gw, path.join(work, 'docker-ldap-bad'), 'alice', 'wrong');
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /incorrect username or password/);
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
      // alice exists only at the provider (group developers); htpasswd knows admin alone.
      gw = await startTestGateway({ users: { admin: 'admin-password' }, access: 'groups:\n  developers: []\nrules:\n  - { groups: [developers], repositories: ["app/**"], actions: [pull, push] }\n', config, env: { GATEWAY_LISTEN: `127.0.0.1:${port}`, GATEWAY_PUBLIC_URL: publicUrl } });
    });
    after(async () => {
      await gw?.close();
      await provider?.stop();
    });

    test('logs in with the token shown after sign-in and pushes where the sign-in group may', async () => {
      const { token } = await signInThroughGateway(gw, provider, 'alice', 'alice-password');
      const config = path.join(work, 'docker-oidc');
      const login = await dockerLogin(gw, config, 'alice', token);
      assert.equal(login.code, 0, login.stderr);
      await push(gw, image, config, 'app/oidc:v1');
      await assert.rejects(push(gw, image, config, 'other/oidc:v1'), /denied|unauthorized|authentication required/i);
      const forged = await dockerLogin(gw, path.join(work, 'docker-oidc-bad'), 'alice', `${token.slice(0, -4)}AAAA`);
      assert.notEqual(forged.code, 0);
    });
  });

  describe('a CI job with its ID token', () => {
    let issuer: JwksIssuer;
    let gw: TestGateway;
    before(async () => {
      issuer = await startJwksIssuer();
      const config = `providers:\n  - type: ci-id-token\n    login_users: [ci]\n    issuers:\n      - issuer: ${issuer.url}\n        audience: https://registry.example.com\n        mappings:\n          - claims: { repository: acme/web, ref: refs/heads/main }\n            user: ci-acme-web\n            groups: [ci]\n`;
      gw = await startTestGateway({ users: { admin: 'admin-password' }, access: 'groups:\n  ci: []\nrules:\n  - { users: [ci-acme-web], repositories: ["acme/web"], actions: [pull, push] }\n', config });
    });
    after(async () => {
      await gw?.close();
      await issuer?.close();
    });

    test('`echo "$ID_TOKEN" | docker login -u ci --password-stdin` works while the token is good, and pushes only where the mapping may', async () => {
      const token = await issuer.mint(githubClaims('acme/web', 'refs/heads/main'));
      const config = path.join(work, 'docker-ci');
      const login = await dockerLogin(gw, config, 'ci', token);
      assert.equal(login.code, 0, login.stderr);
      assert.equal((await stored(config, gw.host)).identitytoken, undefined, 'no refresh token for an ID token');
      await push(gw, image, config, 'acme/web:v1');
      await assert.rejects(push(gw, image, config, 'acme/other:v1'), /denied|unauthorized|authentication required/i);
      const expired = await issuer.mint(githubClaims('acme/web', 'refs/heads/main'), { expiresIn: -120 });
      const refused = await dockerLogin(gw, path.join(work, 'docker-ci-expired'), 'ci', expired);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /incorrect username or password|unauthorized/i);
    });
  });
});
