// CI ID-token logins end to end: a real gateway with a `providers:` entry, real JWKS issuers on loopback, skopeo pushing and pulling as GitHub- and GitLab-shaped jobs.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { addUser } from '../../src/auth/htpasswd.js';
import { loadConfig } from '../../src/config/config.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { RegistryProcess } from '../../src/registry/registry-process.js';
import { basic, request, type TestGateway } from '../helpers/gateway.js';
import { githubClaims, gitlabClaims, startJwksIssuer, type JwksIssuer } from '../helpers/jwks-issuer.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import { skopeoCopy, skopeoInspectDigest, skopeoLogin } from '../helpers/skopeo.js';

const audience = 'https://registry.test';

function settingsFile(github: JwksIssuer, gitlab: JwksIssuer, flaky: JwksIssuer, auth: 'token' | 'basic'): string {
  return `auth: ${auth}
providers:
  - type: ci-id-token
    login_users: [ci]
    issuers:
      - issuer: ${github.url}
        audience: ${audience}
        mappings:
          - claims: { repository: acme/web, ref: refs/heads/main }
            user: ci-acme-web
            groups: [ci]
      - issuer: ${gitlab.url}
        audience: [${audience}]
        mappings:
          - claims: { project_path: "acme/**", ref_protected: true }
            user: "gitlab-{project_path}"
            groups: [ci, gitlab]
      - issuer: ${flaky.url}
        audience: ${audience}
        mappings:
          - claims: { repository: "acme/*" }
            user: ci-flaky
`;
}

const accessFile = `groups:
  ci: []
  gitlab: []
rules:
  - { users: [ci-acme-web], repositories: ["acme/web"], actions: [pull, push] }
  - { groups: [gitlab], repositories: ["acme/platform/**"], actions: [pull, push] }
  - { groups: [ci], repositories: ["**"], actions: [pull] }
  - { users: [alice], repositories: ["**"], actions: ["*"] }
`;

type Gateway = Pick<TestGateway, 'host' | 'ca' | 'certDir' | 'logLines'> & { auth: 'token' | 'basic'; close(): Promise<void> };

/** A gateway started from a settings file with a `providers:` section, in front of a real registry. */
async function startGatewayWithSettings(settings: string, auth: 'token' | 'basic'): Promise<Gateway> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ci-id-token-gateway-'));
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logLines.push(...chunk.toString('utf8').split('\n').filter((line) => line.length > 0));
      callback();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  await writeFile(path.join(dir, 'gateway.yml'), settings);
  await writeFile(path.join(dir, 'access.yml'), accessFile);
  await addUser(path.join(dir, 'htpasswd', 'htpasswd'), 'alice', 'alice-password', 5);
  const registry = new RegistryProcess({ binary: '/usr/bin/docker-registry', dataDir: path.join(dir, 'registry-data'), logger: logger.child({ component: 'registry' }) });
  await registry.start();
  let gateway: RunningGateway;
  try {
    const env = { GATEWAY_LISTEN: '127.0.0.1:0', GATEWAY_UPSTREAM: registry.url, GATEWAY_SHUTDOWN_GRACE: '1' };
    const { config } = loadConfig({ file: 'gateway.yml', env, cwd: dir });
    gateway = await startGateway(config, { logger, env: process.env, announce: () => {} });
  } catch (error) {
    await registry.stop();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const certDir = path.join(dir, 'client-certs');
  const ca = await readFile(path.join(dir, 'certs', 'ca.crt'));
  await mkdir(certDir, { recursive: true });
  await writeFile(path.join(certDir, 'ca.crt'), ca);
  return {
    auth,
    host: `localhost:${gateway.port}`,
    ca,
    certDir,
    logLines,
    async close() {
      await gateway.close();
      await registry.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Status of a login with these credentials: a docker-style token request, or in Basic mode `GET /v2/`. */
async function loginStatus(gw: Gateway, user: string, password: string): Promise<number> {
  const target = gw.auth === 'token' ? `/token?${new URLSearchParams({ service: 'registry-gateway', scope: 'repository:acme/web:pull' })}` : '/v2/';
  return (await request(gw, 'GET', target, { headers: { Authorization: basic(user, password) } })).status;
}

/** The access log's reason for the last refused login. */
function lastLoginFailure(gw: Gateway): { authenticator?: string; reason?: string } {
  const entries = gw.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.msg === 'request' && entry.status !== 200);
  const last = entries.at(-1) ?? {};
  return { authenticator: last.authenticator as string | undefined, reason: (last.reason ?? last.login_failure) as string | undefined };
}

for (const auth of ['token', 'basic'] as const) {
  describe(`CI ID-token logins through the gateway (${auth} mode)`, () => {
    let github: JwksIssuer;
    let gitlab: JwksIssuer;
    let flaky: JwksIssuer;
    let gw: Gateway;
    let work: string;
    let image: TestImage;

    before(async () => {
      [github, gitlab, flaky] = await Promise.all([startJwksIssuer(), startJwksIssuer({ alg: 'ES256' }), startJwksIssuer()]);
      gw = await startGatewayWithSettings(settingsFile(github, gitlab, flaky, auth), auth);
      work = await mkdtemp(path.join(os.tmpdir(), 'ci-id-token-'));
      image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 512 * 1024 }] });
    });
    after(async () => {
      await gw?.close();
      await Promise.all([github?.close(), gitlab?.close(), flaky?.close()]);
      if (work !== undefined) await rm(work, { recursive: true, force: true });
    });

    test('a GitHub job pushes its own repository and may not push elsewhere', async () => {
      const authFile = path.join(work, 'github-auth.json');
      const idToken = await github.mint(githubClaims('acme/web', 'refs/heads/main'), { audience });
      await skopeoLogin({ host: gw.host, user: 'ci', password: idToken, certDir: gw.certDir, authFile });
      await skopeoCopy({ from: image.reference, to: `docker://${gw.host}/acme/web:v1`, certDir: gw.certDir, authFile });
      assert.equal(await skopeoInspectDigest({ image: `docker://${gw.host}/acme/web:v1`, certDir: gw.certDir, authFile }), image.manifestDigest);
      await assert.rejects(skopeoCopy({ from: image.reference, to: `docker://${gw.host}/acme/other:v1`, certDir: gw.certDir, authFile }), /denied|unauthorized|403|401/i);
      if (auth === 'token') {
        const offline = await request(gw, 'GET', '/token?service=registry-gateway&offline_token=true&client_id=docker', { headers: { Authorization: basic('ci', idToken) } });
        assert.equal(offline.status, 200);
        assert.equal(offline.json().refresh_token, undefined, 'an ID-token login gets no refresh token');
      }
    });

    test('a GitLab job pushes under its group and pulls through its group ci', async () => {
      const authFile = path.join(work, 'gitlab-auth.json');
      const idToken = await gitlab.mint(gitlabClaims('acme/platform/api', 'main'), { audience });
      await skopeoLogin({ host: gw.host, user: 'ci', password: idToken, certDir: gw.certDir, authFile });
      await skopeoCopy({ from: image.reference, to: `docker://${gw.host}/acme/platform/api:v1`, certDir: gw.certDir, authFile });
      await skopeoCopy({ from: `docker://${gw.host}/acme/web:v1`, to: `dir:${path.join(work, `pulled-${auth}`)}`, certDir: gw.certDir, authFile });
      await assert.rejects(skopeoCopy({ from: image.reference, to: `docker://${gw.host}/acme/web:v2`, certDir: gw.certDir, authFile }), /denied|unauthorized|403|401/i);
    });

    test('refuses expired, foreign-audience and unmapped tokens with 401, and logs which authenticator refused and why', async () => {
      const cases: [string, Promise<string>, RegExp][] = [
        ['expired', github.mint(githubClaims('acme/web', 'refs/heads/main'), { audience, expiresIn: -300 }), /expired/],
        ['another audience', github.mint(githubClaims('acme/web', 'refs/heads/main'), { audience: 'https://elsewhere.test' }), /audience not accepted/],
        ['no mapping', github.mint(githubClaims('evil/web', 'refs/heads/main'), { audience }), /match no mapping/],
        ['not a JWT', Promise.resolve('hunter2'), /not a JWT/],
      ];
      for (const [what, token, reason] of cases) {
        const password = await token;
        assert.equal(await loginStatus(gw, 'ci', password), 401, what);
        const failure = lastLoginFailure(gw);
        assert.equal(failure.authenticator, 'ci-id-token', what);
        assert.match(failure.reason ?? '', reason, what);
        assert.ok(!gw.logLines.some((line) => line.includes(password.split('.')[2] ?? password)), `${what}: the token is not logged`);
      }
      assert.equal(await loginStatus(gw, 'alice', 'alice-password'), 200, 'htpasswd users are untouched');
    });

    test('an issuer that is down gives 503 for its jobs, never access, and leaves the others working', async () => {
      flaky.failWith(503);
      try {
        const password = await flaky.mint(githubClaims('acme/web', 'refs/heads/main'), { audience });
        assert.equal(await loginStatus(gw, 'ci', password), 503);
        assert.match(lastLoginFailure(gw).reason ?? '', /ci-id-token unavailable: issuer http:\/\/127\.0\.0\.1:\d+: discovery .* answered HTTP 503/);
        assert.equal(await loginStatus(gw, 'ci', await github.mint(githubClaims('acme/web', 'refs/heads/main'), { audience })), 200);
        assert.equal(await loginStatus(gw, 'alice', 'alice-password'), 200);
      } finally {
        flaky.failWith(undefined);
      }
      const elsewhere = await startJwksIssuer();
      await elsewhere.close();
      assert.equal(await loginStatus(gw, 'ci', await elsewhere.mint(githubClaims('acme/web', 'refs/heads/main'), { audience })), 401, 'an issuer that is not configured is refused outright');
    });
  });
}
