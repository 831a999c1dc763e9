// Real podman (both auth modes) and real containerd through ctr (token mode) against the real gateway and registry.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Containerd, Podman, requireCommand } from '../helpers/clients.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, ociManifestMediaType, type TestImage } from '../helpers/oci-image.js';
import { skopeoCopy, skopeoInspectDigest, skopeoLogin } from '../helpers/skopeo.js';

const alice = { user: 'alice', password: 'alice-password' };
const wrongPassword = { user: 'alice', password: 'not-alice-password' };

/** README example 3: anyone pulls public/..., alice does everything. */
const accessRules = `groups: { admins: [alice] }
rules:
  - { groups: [admins], repositories: ["**"], actions: ["*"] }
  - { users: [anonymous, authenticated], repositories: ["public/**"], actions: [pull] }
`;

interface RequestLogLine {
  method: string;
  path: string;
  status: number;
  user?: string;
}

function requestLog(gw: TestGateway): RequestLogLine[] {
  return gw.logLines.map((line) => JSON.parse(line)).filter((entry) => entry.msg === 'request');
}

/** The access log line is written when the response ends, which can trail the client's exit a little. */
async function waitForRequests(gw: TestGateway, matches: (line: RequestLogLine) => boolean, count = 1): Promise<RequestLogLine[]> {
  const deadline = Date.now() + 2000;
  for (;;) {
    const found = requestLog(gw).filter(matches);
    if (found.length >= count || Date.now() > deadline) return found;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** podman names images by their config digest without the algorithm. */
function imageId(image: TestImage): string {
  return image.configDigest.slice('sha256:'.length);
}

for (const mode of ['token', 'basic'] as const) {
  describe(`podman, ${mode} mode`, () => {
    let gw: TestGateway;
    let work: string;
    let image: TestImage;
    /** Logged in as alice, with the test image in its storage. */
    let pusher: Podman;

    before(async () => {
      await requireCommand('podman', 'podman');
      gw = await startTestGateway({ auth: mode, access: accessRules, users: { alice: alice.password } });
      work = await mkdtemp(path.join(os.tmpdir(), `clients-podman-${mode}-`));
      image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 1024 * 1024 }, { sizeBytes: 256 * 1024 }] });
      pusher = await Podman.create(path.join(work, 'pusher'));
      await pusher.login({ host: gw.host, certDir: gw.certDir, ...alice });
      assert.equal(await pusher.loadOciLayout(image.dir, image.tag), imageId(image));
    });
    after(async () => {
      await gw?.close();
      if (work) await rm(work, { recursive: true, force: true });
    });

    test('podman login stores the right password and refuses a wrong one', async () => {
      const right = await Podman.create(path.join(work, 'login-right'));
      await right.login({ host: gw.host, certDir: gw.certDir, ...alice });
      const stored = JSON.parse(await readFile(right.authFile, 'utf8'));
      assert.equal(stored.auths[gw.host].auth, Buffer.from(`alice:${alice.password}`).toString('base64'));

      const wrong = await Podman.create(path.join(work, 'login-wrong'));
      await assert.rejects(wrong.login({ host: gw.host, certDir: gw.certDir, ...wrongPassword }), /invalid username\/password/);
      assert.deepEqual(JSON.parse(await readFile(wrong.authFile, 'utf8')).auths, {});
    });

    test('podman pushes an image and a fresh podman pulls back the same image and layers', async () => {
      const pushedDigest = await pusher.push(imageId(image), `docker://${gw.host}/team/app:v1`, { certDir: gw.certDir });
      assert.match(pushedDigest, /^sha256:[0-9a-f]{64}$/);

      const puller = await Podman.create(path.join(work, 'puller'));
      await puller.login({ host: gw.host, certDir: gw.certDir, ...alice });
      assert.equal(await puller.pull(`${gw.host}/team/app:v1`, { certDir: gw.certDir }), imageId(image));
      const pulled = await puller.inspect(`${gw.host}/team/app:v1`);
      assert.equal(pulled.Digest, pushedDigest);
      // podman recompresses layers on push; the uncompressed contents must be what was built.
      assert.deepEqual(pulled.RootFS.Layers, image.diffIds);
    });

    test('an anonymous podman pulls a public repository and is refused a private one', async () => {
      await pusher.push(imageId(image), `docker://${gw.host}/public/base:v1`, { certDir: gw.certDir });
      await pusher.push(imageId(image), `docker://${gw.host}/team/private:v1`, { certDir: gw.certDir });

      const anonymous = await Podman.create(path.join(work, 'anonymous'));
      await assert.rejects(anonymous.pull(`${gw.host}/team/private:v1`, { certDir: gw.certDir }), /unauthorized/i);
      assert.equal(await anonymous.pull(`${gw.host}/public/base:v1`, { certDir: gw.certDir }), imageId(image));
    });
  });
}

describe('containerd (ctr), token mode', () => {
  let gw: TestGateway;
  let work: string;
  let image: TestImage;
  let containerd: Containerd;
  let reference: string;

  before(async () => {
    await requireCommand('containerd', 'containerd');
    await requireCommand('ctr', 'containerd');
    await requireCommand('skopeo', 'skopeo');
    gw = await startTestGateway({ auth: 'token', users: { alice: alice.password } });
    work = await mkdtemp(path.join(os.tmpdir(), 'clients-ctr-'));
    image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 1024 * 1024 }, { sizeBytes: 256 * 1024 }] });
    const skopeo = { certDir: gw.certDir, authFile: path.join(work, 'skopeo-auth.json') };
    await skopeoLogin({ ...skopeo, host: gw.host, ...alice });
    reference = `${gw.host}/team/app:v1`;
    await skopeoCopy({ ...skopeo, from: image.reference, to: `docker://${reference}` });
    await skopeoCopy({ ...skopeo, from: image.reference, to: `docker://${gw.host}/team/secret:v1` });
    containerd = await Containerd.start(path.join(work, 'containerd'));
    await containerd.trustRegistry(gw.host, path.join(gw.certDir, 'ca.crt'));
  });
  after(async () => {
    await containerd?.stop();
    await gw?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('ctr pulls with a token from POST /token and lists the manifest digest skopeo pushed', async () => {
    await containerd.pull(reference, alice);
    const listed = (await containerd.images()).find((row) => row.ref === reference);
    assert.ok(listed, `ctr images ls lists ${reference}`);
    assert.equal(listed.digest, image.manifestDigest);
    assert.equal(listed.mediaType, ociManifestMediaType);
    // containerd asks for its token with the OAuth2 password grant.
    const tokenRequests = await waitForRequests(gw, (line) => line.method === 'POST' && line.path === '/token' && line.status === 200);
    assert.ok(tokenRequests.length > 0, 'containerd got its token from POST /token');
    assert.ok(tokenRequests.every((line) => line.user === 'alice'));
  });

  test('ctr with a wrong password is refused and stores nothing', async () => {
    const secret = `${gw.host}/team/secret:v1`;
    await assert.rejects(containerd.pull(secret, wrongPassword), /401 Unauthorized/);
    assert.equal((await containerd.images()).find((row) => row.ref === secret), undefined);
  });

  test('ctr pushes to another repository by mounting the blobs, and skopeo reads the same digest back', async () => {
    await containerd.pull(reference, alice);
    const copy = `${gw.host}/team/copy:v1`;
    await containerd.tag(reference, copy);
    await assert.rejects(containerd.push(copy, wrongPassword), /401 Unauthorized/);
    await containerd.push(copy, alice);

    const digest = await skopeoInspectDigest({ image: `docker://${copy}`, certDir: gw.certDir, authFile: path.join(work, 'skopeo-auth.json') });
    assert.equal(digest, image.manifestDigest);
    // containerd knows the blobs came from team/app and mounts them (201) instead of uploading them.
    const blobCount = image.layerDigests.length + 1;
    const uploads = await waitForRequests(gw, (line) => line.method === 'POST' && line.path === '/v2/team/copy/blobs/uploads/', blobCount);
    assert.equal(uploads.length, blobCount);
    assert.deepEqual(uploads.map((line) => line.status), Array(blobCount).fill(201));
  });
});
