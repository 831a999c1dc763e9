// A gateway for the web UI's browser tests: users with different rights, images pushed by skopeo, and registry API checks.

import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fetchToken, startTestGateway, type TestGateway } from './gateway.js';
import { buildOciImage, type TestImage } from './oci-image.js';
import { freePort } from './ports.js';
import { RegistryApi } from './registry-api.js';
import { skopeoCopy, skopeoLogin, type SkopeoContext } from './skopeo.js';

export const passwords = { alice: 'alice-password', bob: 'bob-password' } as const;

/**
 * alice may do everything; bob may only pull team/** and evil/**; everyone (anonymous too) may pull
 * public/**; secret/** is alice's alone. release-* tags in team/** are immutable.
 */
export const accessRules = `
rules:
  - users: [alice]
    repositories: ["**"]
    actions: ["*", catalog]
  - users: [bob]
    repositories: ["team/**", "evil/**"]
    actions: [pull]
  - users: [anonymous, authenticated]
    repositories: ["public/**"]
    actions: [pull]
immutable_tags:
  - repositories: ["team/**"]
    tags: ["release-*"]
`;

export interface UiGateway {
  gw: TestGateway;
  /** https://localhost:PORT, the gateway's public URL. */
  origin: string;
  work: string;
  image: TestImage;
  /** skopeo logged in as alice. */
  alice: SkopeoContext;
  /** Pushes the test image as alice to each `repo:tag`. */
  push(...targets: string[]): Promise<void>;
  /** alice's registry API client with pull, push and delete on `repository`. */
  api(repository: string): Promise<RegistryApi>;
  close(): Promise<void>;
}

export async function startUiGateway(): Promise<UiGateway> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'gateway-ui-'));
  const port = await freePort();
  const origin = `https://localhost:${port}`;
  let gw: TestGateway;
  try {
    gw = await startTestGateway({ users: { ...passwords }, access: accessRules, env: { GATEWAY_LISTEN: `127.0.0.1:${port}`, GATEWAY_PUBLIC_URL: origin } });
  } catch (error) {
    await rm(work, { recursive: true, force: true });
    throw error;
  }
  const alice = { certDir: gw.certDir, authFile: path.join(work, 'alice-auth.json') };
  const image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 16 * 1024 }] });
  await skopeoLogin({ ...alice, host: gw.host, user: 'alice', password: passwords.alice });
  return {
    gw,
    origin,
    work,
    image,
    alice,
    async push(...targets) {
      for (const target of targets) await skopeoCopy({ ...alice, from: image.reference, to: `docker://${gw.host}/${target}` });
    },
    async api(repository) {
      return new RegistryApi(gw, await fetchToken(gw, 'alice', passwords.alice, [`repository:${repository}:pull,push,delete`]));
    },
    async close() {
      await gw.close();
      await rm(work, { recursive: true, force: true });
    },
  };
}

/** `skopeo inspect --creds USER:SECRET` with no stored credentials; resolves to the digest or rejects with skopeo's message. */
export function inspectWithCreds(gw: TestGateway, work: string, creds: string, image: string): Promise<string> {
  const authFile = path.join(work, 'no-such-auth.json');
  return new Promise((resolve, reject) => {
    execFile(
      'skopeo',
      ['inspect', '--authfile', authFile, '--cert-dir', gw.certDir, '--creds', creds, '--retry-times', '0', `docker://${gw.host}/${image}`],
      { env: { ...process.env, REGISTRY_AUTH_FILE: authFile }, timeout: 60_000 },
      (error, stdout, stderr) => (error ? reject(new Error(stderr.trim() || error.message)) : resolve(String(JSON.parse(stdout).Digest))),
    );
  });
}
