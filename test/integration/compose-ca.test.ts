// Under compose, the CA key is written by the one-shot certs service only, never mounted into the gateway.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defaultCaDir } from '../../src/tls/ca.js';
import { certificatePaths } from '../../src/tls/certs.js';
import { envFileFromExample, projectRoot, renderCompose, serviceMounts, type ComposeModel } from '../helpers/swift.js';

/** The folder the image runs in (its WORKDIR): relative paths of the commands are taken from it. */
const WORKDIR = '/srv/gateway';

describe('docker-compose.yml and the CA key', () => {
  let work: string;
  let model: ComposeModel;
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'compose-ca-test-'));
    const envFile = path.join(work, 'test.env');
    await writeFile(envFile, await envFileFromExample({ REGISTRY_HTTP_SECRET: randomBytes(16).toString('hex'), REGISTRY_HOST: 'registry.example.org' }));
    model = await renderCompose({ files: ['docker-compose.yml'], envFile, home: work });
  });
  after(() => rm(work, { recursive: true, force: true }));

  test('the certs service writes the CA key to ./ca, mounted where `gateway certs --dir certs` puts it', () => {
    const certs = model.services.certs!;
    const command = certs.command as string[];
    const dir = command[command.indexOf('--dir') + 1]!;
    assert.equal(command.includes('--ca-dir'), false, 'the default CA folder is used');
    const caKey = certificatePaths(path.posix.join(WORKDIR, dir)).caKey;
    assert.equal(path.posix.dirname(caKey), defaultCaDir(path.posix.join(WORKDIR, dir)));
    const caMount = serviceMounts(certs).find((mount) => mount.target === path.posix.dirname(caKey));
    assert.ok(caMount, `the certs service mounts ${path.posix.dirname(caKey)}`);
    assert.equal(path.resolve(caMount.source), path.join(projectRoot, 'ca'));
    assert.equal(caMount.readOnly, false);
  });

  test('no other service mounts the CA folder, and nothing mounted into the gateway holds the CA key', () => {
    const caFolder = path.join(projectRoot, 'ca');
    for (const [name, service] of Object.entries(model.services)) {
      if (name === 'certs') continue;
      for (const mount of serviceMounts(service)) {
        const source = path.resolve(mount.source);
        assert.ok(source !== caFolder && !source.startsWith(`${caFolder}${path.sep}`) && !caFolder.startsWith(`${source}${path.sep}`), `${name} mounts ${mount.source}, which holds the CA folder`);
        assert.notEqual(path.posix.basename(mount.target), 'ca.key', `${name} mounts a ca.key`);
      }
    }
    const gatewayTargets = serviceMounts(model.services.gateway!).map((mount) => mount.target);
    assert.ok(gatewayTargets.includes(`${WORKDIR}/certs`), 'the gateway still gets certs/');
    assert.equal(gatewayTargets.includes(`${WORKDIR}/ca`), false);
  });
});
