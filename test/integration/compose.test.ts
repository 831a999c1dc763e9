// The compose deployment as compose itself reads it: what is published, what the registry gets, which settings .env must hold.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import {
  envFileFromExample,
  projectRoot,
  renderCompose,
  runCompose,
  serviceEnvironment,
  serviceMounts,
  type ComposeModel,
  type ComposeService,
} from '../helpers/swift.js';

const storageFiles = ['deploy/compose.s3.yml', 'deploy/compose.swift.yml'] as const;

/** The least each storage file needs to render (its `:?` variables). */
const requiredStorageSettings: Record<(typeof storageFiles)[number], Record<string, string>> = {
  'deploy/compose.s3.yml': { REGISTRY_STORAGE_S3_BUCKET: 'images', REGISTRY_STORAGE_S3_REGION: 'eu-west-1' },
  'deploy/compose.swift.yml': {
    REGISTRY_STORAGE_SWIFT_AUTHURL: 'https://identity.api.rackspacecloud.com/v2.0/',
    REGISTRY_STORAGE_SWIFT_USERNAME: 'rs-user',
    REGISTRY_STORAGE_SWIFT_PASSWORD: 'rs-password',
    REGISTRY_STORAGE_SWIFT_CONTAINER: 'docker',
  },
};

interface PublishedPort {
  target: number;
  published: number;
}

/** Ports in either of the forms compose versions print (long mapping or "HOST:CONTAINER"). */
function publishedPorts(service: ComposeService): PublishedPort[] {
  return (service.ports ?? []).map((port) => {
    if (typeof port === 'string') {
      const parts = port.replace(/\/tcp$/, '').split(':');
      return { target: Number(parts[parts.length - 1]), published: Number(parts[parts.length - 2]) };
    }
    return { target: Number(port.target), published: Number(port.published) };
  });
}

function networkNames(service: ComposeService): string[] {
  const networks = service.networks ?? [];
  return (Array.isArray(networks) ? networks : Object.keys(networks)).sort();
}

function service(model: ComposeModel, name: string): ComposeService {
  const found = model.services[name];
  assert.ok(found, `compose has a ${name} service`);
  return found;
}

/** Every `${NAME...}` a file interpolates. */
function interpolatedNames(text: string): Set<string> {
  return new Set([...text.matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)].map((match) => match[1]!));
}

describe('docker-compose.yml', () => {
  let work: string;
  /** docker-compose.yml alone, rendered from .env.example with only the required values set. */
  let base: ComposeModel;
  const secret = randomBytes(16).toString('hex');
  const registryHost = 'registry.example.org';

  const envFileWith = async (name: string, values: Record<string, string>): Promise<string> => {
    const file = path.join(work, name);
    await writeFile(file, await envFileFromExample(values));
    return file;
  };
  const render = async (files: string[], values: Record<string, string>): Promise<ComposeModel> =>
    renderCompose({ files, envFile: await envFileWith(`${randomBytes(4).toString('hex')}.env`, values), home: work });

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'compose-test-'));
    base = await render(['docker-compose.yml'], { REGISTRY_HTTP_SECRET: secret, REGISTRY_HOST: registryHost });
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('publishes only the gateway port; the registry sits on an internal network with the shared secret', () => {
    const model = base;
    const gateway = service(model, 'gateway');
    const registry = service(model, 'registry');

    assert.deepEqual(publishedPorts(gateway), [{ published: 5443, target: 5443 }]);
    for (const [name, other] of Object.entries(model.services)) {
      if (name !== 'gateway') assert.deepEqual(publishedPorts(other), [], `${name} publishes no port`);
    }
    assert.deepEqual(networkNames(registry), ['backend']);
    assert.equal(model.networks?.backend?.internal, true, 'the backend network has no route out');
    assert.deepEqual(networkNames(gateway), ['backend', 'frontend']);

    assert.equal(serviceEnvironment(registry).REGISTRY_HTTP_SECRET, secret);
    assert.equal(registry.image, 'registry:2');
    const gatewayEnv = serviceEnvironment(gateway);
    assert.equal(gatewayEnv.GATEWAY_UPSTREAM, 'http://registry:5000');
    assert.equal(gatewayEnv.GATEWAY_LISTEN, '0.0.0.0:5443');
  });

  test('mounts certs, htpasswd and the config read-only into the gateway, and the shipped registry config', () => {
    const model = base;
    const gatewayMounts = serviceMounts(service(model, 'gateway'));
    const expected: [string, string][] = [['certs', '/srv/gateway/certs'], ['htpasswd', '/srv/gateway/htpasswd'], ['deploy/gateway', '/srv/gateway/config']];
    for (const [folder, target] of expected) {
      const mount = gatewayMounts.find((m) => m.target === target);
      assert.ok(mount, `gateway mounts ${target}`);
      assert.equal(path.resolve(mount.source), path.resolve(projectRoot, folder));
      assert.equal(mount.readOnly, true, `${target} is read-only`);
    }
    const registryMounts = serviceMounts(service(model, 'registry'));
    const config = registryMounts.find((m) => m.target === '/etc/docker/registry/config.yml');
    assert.equal(path.resolve(config?.source ?? ''), path.join(projectRoot, 'deploy/registry/config.yml'));
    const data = registryMounts.find((m) => m.target === '/var/lib/registry');
    assert.equal(data?.source, 'registry-data', 'filesystem storage on the named volume');
    assert.ok(model.volumes && 'registry-data' in model.volumes);
  });

  test('deploy/compose.acme.yml turns ACME on for REGISTRY_HOST with certs/acme writable and the rest of certs read-only', async () => {
    const model = await render(['docker-compose.yml', 'deploy/compose.acme.yml'], { REGISTRY_HTTP_SECRET: secret, REGISTRY_HOST: registryHost, GATEWAY_PORT: '443', GATEWAY_ACME_EMAIL: 'ops@example.org' });
    const gateway = service(model, 'gateway');
    const environment = serviceEnvironment(gateway);
    assert.equal(environment.GATEWAY_ACME, 'on');
    assert.equal(environment.GATEWAY_ACME_DOMAINS, registryHost);
    assert.equal(environment.GATEWAY_PUBLIC_URL, `https://${registryHost}`);
    assert.equal(environment.GATEWAY_ACME_EMAIL, 'ops@example.org');
    assert.deepEqual(publishedPorts(gateway), [{ published: 443, target: 5443 }]);
    const mounts = serviceMounts(gateway);
    assert.equal(mounts.find((m) => m.target === '/srv/gateway/certs')?.readOnly, true);
    const acme = mounts.find((m) => m.target === '/srv/gateway/certs/acme');
    assert.equal(path.resolve(acme?.source ?? ''), path.join(projectRoot, 'certs/acme'));
    assert.notEqual(acme?.readOnly, true, 'the gateway writes its ACME files');

    const withHttp = await render(['docker-compose.yml', 'deploy/compose.acme.yml', 'deploy/compose.acme-http.yml'], { REGISTRY_HTTP_SECRET: secret, REGISTRY_HOST: registryHost, GATEWAY_PORT: '443' });
    const httpGateway = service(withHttp, 'gateway');
    assert.deepEqual(publishedPorts(httpGateway).sort((a, b) => a.published - b.published), [{ published: 80, target: 8080 }, { published: 443, target: 5443 }]);
    assert.equal(serviceEnvironment(httpGateway).GATEWAY_HTTP_LISTEN, '0.0.0.0:8080');
  });

  test('GATEWAY_PORT moves the published port, the container keeps listening on 5443', async () => {
    const model = await render(['docker-compose.yml'], { REGISTRY_HTTP_SECRET: secret, GATEWAY_PORT: '443' });
    assert.deepEqual(publishedPorts(service(model, 'gateway')), [{ published: 443, target: 5443 }]);
  });

  for (const file of storageFiles) {
    const driver = file.includes('s3') ? 's3' : 'swift';
    test(`${file} switches the registry to ${driver} with the .env values, still unpublished`, async () => {
      const values = { REGISTRY_HTTP_SECRET: secret, ...requiredStorageSettings[file] };
      const model = await render(['docker-compose.yml', file], values);
      const registry = service(model, 'registry');
      const environment = serviceEnvironment(registry);
      assert.equal(environment.REGISTRY_STORAGE, driver);
      for (const [name, value] of Object.entries(values)) assert.equal(environment[name], value, name);
      assert.equal(environment.REGISTRY_STORAGE_DELETE_ENABLED, 'true');
      assert.equal(environment.REGISTRY_STORAGE_REDIRECT_DISABLE, 'false');

      assert.deepEqual(publishedPorts(registry), []);
      assert.deepEqual(networkNames(registry), ['backend', 'egress']);
      assert.notEqual(model.networks?.egress?.internal, true, 'the registry can reach the object store');
      assert.deepEqual(publishedPorts(service(model, 'gateway')), [{ published: 5443, target: 5443 }]);
    });

    test(`${file} refuses to render without its required settings, naming them`, async () => {
      const [firstRequired] = Object.keys(requiredStorageSettings[file]);
      const values = { REGISTRY_HTTP_SECRET: secret, ...requiredStorageSettings[file], [firstRequired!]: '' };
      const envFile = await envFileWith(`missing-${driver}.env`, values);
      const result = await runCompose({ files: ['docker-compose.yml', file], envFile, args: ['config'], home: work });
      assert.equal(result.ok, false);
      // The message of the `:?` check comes last (compose prints the variable names elsewhere too).
      assert.match(result.stderr.trim(), new RegExp(`set ${firstRequired} in \\.env$`));
    });
  }

  test('refuses to render without REGISTRY_HTTP_SECRET, naming it', async () => {
    const envFile = await envFileWith('no-secret.env', {});
    const result = await runCompose({ files: ['docker-compose.yml'], envFile, args: ['config'], home: work });
    assert.equal(result.ok, false);
    assert.match(result.stderr.trim(), /set REGISTRY_HTTP_SECRET in \.env \(openssl rand -hex 32\)$/);
  });

  test('certs, user and token are one-shot setup services that write what the gateway only reads', () => {
    const model = base;
    const certs = service(model, 'certs');
    const user = service(model, 'user');
    for (const setup of [certs, user]) {
      assert.deepEqual(setup.profiles, ['setup'], 'not started by `up`');
      assert.equal(setup.image, service(model, 'gateway').image, 'the gateway image');
      assert.equal(setup.network_mode, 'none');
    }
    const command = certs.command as string[];
    assert.deepEqual(command.slice(0, 3), ['certs', '--dir', 'certs']);
    assert.equal(command[command.indexOf('--host') + 1], registryHost);
    assert.deepEqual(serviceMounts(certs).map((m) => [m.target, m.readOnly]), [['/srv/gateway/certs', false], ['/srv/gateway/ca', false]]);
    assert.deepEqual(serviceMounts(user).map((m) => [m.target, m.readOnly]), [['/srv/gateway/htpasswd', false]]);
    assert.deepEqual(user.entrypoint, ['node', 'dist/src/cli.js', 'user']);
    const token = service(model, 'token');
    assert.deepEqual(token.profiles, ['setup'], 'not started by `up`');
    assert.equal(token.network_mode, 'none');
    assert.deepEqual(serviceMounts(token).map((m) => [m.target, m.readOnly]), [['/srv/gateway/htpasswd', false]]);
    assert.deepEqual(token.entrypoint, ['node', 'dist/src/cli.js', 'token']);
  });

  test('.env.example lists every variable the compose files read, and no storage variable they ignore', async () => {
    const example = await readFile(path.join(projectRoot, '.env.example'), 'utf8');
    const listed = new Set([...example.matchAll(/^(?:#\s*)?([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1]!));
    const read = new Set<string>();
    for (const file of ['docker-compose.yml', ...storageFiles]) {
      for (const name of interpolatedNames(await readFile(path.join(projectRoot, file), 'utf8'))) read.add(name);
    }
    for (const name of read) assert.ok(listed.has(name), `${name} is read by a compose file but missing from .env.example`);
    for (const name of listed) {
      if (name.startsWith('REGISTRY_STORAGE_')) assert.ok(read.has(name), `${name} is in .env.example but no compose file uses it`);
    }
  });
});

describe('Dockerfile', () => {
  test('the HEALTHCHECK command passes against a running gateway and fails when nothing answers', async (t) => {
    const dockerfile = await readFile(path.join(projectRoot, 'Dockerfile'), 'utf8');
    const healthcheck = /^HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])$/m.exec(dockerfile);
    assert.ok(healthcheck, 'the Dockerfile has an exec-form HEALTHCHECK CMD');
    const [command, ...args] = JSON.parse(healthcheck[1]!) as string[];
    assert.equal(command, 'node');
    assert.match(args.join(' '), /port:5443,path:'\/healthz'/);
    // The container listens on 5443; here the gateway gets a free port, so only the port differs.
    const onPort = (port: number) => args.map((arg) => arg.replace('port:5443', `port:${port}`));
    const exitCode = (port: number) =>
      new Promise<number>((resolve) => {
        execFile(process.execPath, onPort(port), { timeout: 15_000 }, (error) => resolve(error ? Number(error.code ?? 1) : 0));
      });

    const gateway = await startTestGateway();
    t.after(() => gateway.close());
    assert.equal(await exitCode(gateway.gateway.port), 0);
    assert.notEqual(await exitCode(await freePort()), 0);
  });

  test('the ENTRYPOINT runs the CLI from the WORKDIR layout (dist/src next to package.json), as a non-root user', async () => {
    const dockerfile = await readFile(path.join(projectRoot, 'Dockerfile'), 'utf8');
    const entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1] ?? 'null') as string[] | null;
    assert.ok(entrypoint && entrypoint[0] === 'node', 'an exec-form ENTRYPOINT running node');
    const { version } = JSON.parse(await readFile(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string };
    const printed = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [...entrypoint.slice(1), '--version'], { cwd: projectRoot }, (error, stdout) => (error ? reject(error) : resolve(stdout.trim())));
    });
    assert.equal(printed, version);
    const users = [...dockerfile.matchAll(/^USER (\S+)$/gm)].map((match) => match[1]!);
    assert.ok(users.length > 0 && !['root', '0'].includes(users[users.length - 1]!), 'the last USER is not root');
    assert.match(dockerfile, /^EXPOSE 5443$/m);
  });
});
