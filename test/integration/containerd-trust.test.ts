// The containerd steps `gateway certs show` prints, run as printed: the hosts.toml it gives, and ctr images pull --hosts-dir.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createCertificates } from '../../src/tls/certs.js';
import { containerdHostsToml, ctrPullArguments } from '../../src/tls/trust.js';
import { Containerd, requireCommand, runCommand } from '../helpers/clients.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { buildOciImage, type TestImage } from '../helpers/oci-image.js';
import { skopeoCopy, skopeoLogin } from '../helpers/skopeo.js';

const alice = { user: 'alice', password: 'alice-password' };

describe('containerd with the printed trust steps', () => {
  let gw: TestGateway;
  let work: string;
  let image: TestImage;
  let containerd: Containerd;
  /** Plays /etc/containerd/certs.d. */
  let hostsDir: string;
  let reference: string;

  /** `ctr images pull` with exactly the arguments the instructions print (this containerd's socket aside). */
  const ctrPull = (args: string[]) =>
    runCommand('ctr', ['--address', containerd.socket, ...args], {
      label: 'ctr images pull',
      // The test containerd only has the native snapshotter; ctr reads its choice from here.
      env: { ...process.env, CONTAINERD_SNAPSHOTTER: 'native' },
    });

  before(async () => {
    await requireCommand('containerd', 'containerd');
    await requireCommand('ctr', 'containerd');
    await requireCommand('skopeo', 'skopeo');
    gw = await startTestGateway({ auth: 'token', users: { alice: alice.password } });
    work = await mkdtemp(path.join(os.tmpdir(), 'containerd-trust-'));
    image = await buildOciImage({ dir: path.join(work, 'image'), tag: 'v1', layers: [{ sizeBytes: 64 * 1024 }] });
    const skopeo = { certDir: gw.certDir, authFile: path.join(work, 'skopeo-auth.json') };
    await skopeoLogin({ ...skopeo, host: gw.host, ...alice });
    reference = `${gw.host}/team/app:v1`;
    await skopeoCopy({ ...skopeo, from: image.reference, to: `docker://${reference}` });
    containerd = await Containerd.start(path.join(work, 'containerd'));

    // The printed steps: ca.crt copied into certs.d/HOST:PORT/, and the printed hosts.toml beside it.
    hostsDir = path.join(work, 'certs.d');
    const registryDir = path.join(hostsDir, gw.host);
    await mkdir(registryDir, { recursive: true });
    await writeFile(path.join(registryDir, 'ca.crt'), gw.ca);
    await writeFile(path.join(registryDir, 'hosts.toml'), containerdHostsToml(gw.host, path.join(registryDir, 'ca.crt')));
  });
  after(async () => {
    await containerd?.stop();
    await gw?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('ctr images pull --hosts-dir pulls through the gateway', async () => {
    await ctrPull(ctrPullArguments(hostsDir, reference, `${alice.user}:${alice.password}`));
    const { stdout } = await runCommand('ctr', ['--address', containerd.socket, 'images', 'ls', '-q'], { label: 'ctr images ls' });
    assert.ok(stdout.split('\n').includes(reference), stdout);
  });

  test('a wrong password reads 401, not a TLS error', async () => {
    await assert.rejects(ctrPull(ctrPullArguments(hostsDir, reference, `${alice.user}:wrong`)), /401 Unauthorized/);
  });

  test('the CA named in that hosts.toml is what ctr verifies against: another CA there fails with x509', async () => {
    // Without its top-level server/ca lines, containerd 1.6 falls back to localhost with no verification at all.
    const other = await createCertificates({ dir: path.join(work, 'other', 'certs'), hosts: ['localhost'] });
    const otherHostsDir = path.join(work, 'other-certs.d');
    await mkdir(path.join(otherHostsDir, gw.host), { recursive: true });
    await writeFile(path.join(otherHostsDir, gw.host, 'hosts.toml'), containerdHostsToml(gw.host, other.caCert));
    await assert.rejects(ctrPull(ctrPullArguments(otherHostsDir, reference, `${alice.user}:${alice.password}`)), /x509: certificate signed by unknown authority/);
  });
});
