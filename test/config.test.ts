// Tests for configuration: defaults, YAML file and GATEWAY_* variables, path resolution, and errors naming the setting.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { describeConfig, loadConfig, parseListen, settings, type Config, type ListenAddress } from '../src/config/config.js';
import { ConfigError } from '../src/errors.js';

const cwd = path.resolve('/srv/gateway');

async function temporaryFolder(t: TestContext): Promise<string> {
  const folder = await mkdtemp(path.join(tmpdir(), 'config-test-'));
  t.after(() => rm(folder, { recursive: true, force: true }));
  return folder;
}

/** Writes a YAML file at `relative` inside `folder` and returns its absolute path. */
async function writeYaml(folder: string, relative: string, text: string): Promise<string> {
  const file = path.join(folder, relative);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text);
  return file;
}

/** Asserts a ConfigError whose message names every one of `names`. */
function assertConfigError(action: () => unknown, names: string[], label: string): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof ConfigError, `${label}: expected a ConfigError, got ${String(error)}`);
    for (const name of names) assert.ok(error.message.includes(name), `${label}: "${error.message}" should name ${name}`);
    return true;
  });
}

describe('loadConfig defaults', () => {
  it('without file or variables gives the documented defaults, paths resolved against cwd', () => {
    const { config, warnings } = loadConfig({ env: {}, cwd });
    const expected: Config = {
      listen: { host: '0.0.0.0', port: 5443 },
      upstreams: [],
      tlsCert: path.join(cwd, 'certs/server.crt'),
      tlsKey: path.join(cwd, 'certs/server.key'),
      htpasswd: path.join(cwd, 'htpasswd/htpasswd'),
      accessFile: path.join(cwd, 'access.yml'),
      accessFileRequired: false,
      ciTokensFile: path.join(cwd, 'htpasswd/ci-tokens.json'),
      auth: 'token',
      publicUrl: undefined,
      service: 'registry-gateway',
      tokenTtlSeconds: 900,
      tokenIssuer: 'registry-gateway',
      tokenKey: path.join(cwd, 'certs/token.key'),
      tokenCert: path.join(cwd, 'certs/token.crt'),
      registryBin: undefined,
      dataDir: path.join(cwd, 'data'),
      logLevel: 'info',
      basicCacheSeconds: 60,
      shutdownGraceSeconds: 25,
      workers: Math.min(availableParallelism(), 8),
      upstreamPerClient: 64,
      bodyIdleSeconds: 60,
      acme: undefined,
      httpListen: undefined,
      metricsListen: { host: '127.0.0.1', port: 9443 },
      metricsListenGiven: false,
      metricsRepositories: 100,
      maintenanceFile: path.join(cwd, 'maintenance/maintenance.json'),
      auditLog: undefined,
      registryConfig: undefined,
      gcSchedule: undefined,
      redis: undefined,
      ui: true,
      corsOrigins: [],
    };
    assert.deepEqual({ ...config }, expected);
    assert.deepEqual(warnings, []);
  });

  it('the defaults shown in --help are the defaults in effect', () => {
    const described = describeConfig(loadConfig({ env: {}, cwd }).config);
    const pathKeys = new Set(['ci_tokens', 'tls_cert', 'tls_key', 'htpasswd', 'token_key', 'token_cert', 'data_dir', 'maintenance_file']);
    for (const setting of settings) {
      if (setting.default.startsWith('(')) continue;
      const expected = pathKeys.has(setting.key) ? path.resolve(cwd, setting.default) : setting.default;
      assert.equal(String(described[setting.key]), expected, setting.key);
    }
  });

  it('an empty YAML file changes nothing but where access.yml is looked for: beside the file', async (t) => {
    const folder = await temporaryFolder(t);
    const file = await writeYaml(folder, 'gateway.yaml', '# nothing set yet\n');
    const withFile = loadConfig({ file, env: {}, cwd }).config;
    assert.deepEqual({ ...withFile, accessFile: '' }, { ...loadConfig({ env: {}, cwd }).config, accessFile: '' });
    assert.equal(withFile.accessFile, path.join(folder, 'access.yml'));
  });
});

describe('loadConfig sources', () => {
  it('reads every kind of setting from variables', () => {
    const { config } = loadConfig({
      cwd,
      env: {
        GATEWAY_LISTEN: '127.0.0.1:8443',
        GATEWAY_UPSTREAM: 'http://registry:5000',
        GATEWAY_AUTH: 'basic',
        GATEWAY_PUBLIC_URL: 'https://registry.example.com:8443',
        GATEWAY_SERVICE: 'registry.example.com',
        GATEWAY_TOKEN_TTL: '300',
        GATEWAY_TOKEN_ISSUER: 'issuer.example.com',
        GATEWAY_LOG_LEVEL: 'debug',
        GATEWAY_BASIC_CACHE_TTL: '0',
        GATEWAY_SHUTDOWN_GRACE: '3600',
        GATEWAY_WORKERS: '3',
      },
    });
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8443 });
    assert.deepEqual(config.upstreams.map((url) => url.origin), ['http://registry:5000']);
    assert.equal(config.auth, 'basic');
    assert.equal(config.publicUrl?.origin, 'https://registry.example.com:8443');
    assert.equal(config.service, 'registry.example.com');
    assert.equal(config.tokenTtlSeconds, 300);
    assert.equal(config.tokenIssuer, 'issuer.example.com');
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.basicCacheSeconds, 0);
    assert.equal(config.shutdownGraceSeconds, 3600);
    assert.equal(config.workers, 3);
  });

  it('variables override the YAML file; settings only in the file still apply', async (t) => {
    const folder = await temporaryFolder(t);
    const file = await writeYaml(folder, 'gateway.yaml', 'auth: basic\ntoken_ttl: 300\nservice: from-file\nlog_level: warn\n');
    const { config } = loadConfig({ file, cwd, env: { GATEWAY_AUTH: 'token', GATEWAY_SERVICE: 'from-env' } });
    assert.equal(config.auth, 'token');
    assert.equal(config.service, 'from-env');
    assert.equal(config.tokenTtlSeconds, 300);
    assert.equal(config.logLevel, 'warn');
  });

  it('an empty variable does not override the file', async (t) => {
    const folder = await temporaryFolder(t);
    const file = await writeYaml(folder, 'gateway.yaml', 'token_ttl: 300\n');
    assert.equal(loadConfig({ file, cwd, env: { GATEWAY_TOKEN_TTL: '' } }).config.tokenTtlSeconds, 300);
  });

  it('takes relative paths in the file from the file folder, and those from variables and defaults from cwd', async (t) => {
    const folder = await temporaryFolder(t);
    const work = path.join(folder, 'work');
    const file = await writeYaml(
      folder,
      'conf/gateway.yaml',
      ['tls_cert: tls/server.crt', 'tls_key: tls/server.key', 'data_dir: ../storage', 'htpasswd: /etc/gateway/htpasswd', 'token_cert: ./token.crt'].join('\n'),
    );
    const { config } = loadConfig({ file, cwd: work, env: { GATEWAY_TLS_KEY: 'keys/server.key', GATEWAY_TOKEN_KEY: '/abs/token.key' } });
    assert.equal(config.tlsCert, path.join(folder, 'conf/tls/server.crt'));
    assert.equal(config.tlsKey, path.join(work, 'keys/server.key'));
    assert.equal(config.dataDir, path.join(folder, 'storage'));
    assert.equal(config.htpasswd, path.resolve('/etc/gateway/htpasswd'));
    assert.equal(config.tokenCert, path.join(folder, 'conf/token.crt'));
    assert.equal(config.tokenKey, path.resolve('/abs/token.key'));
  });

  it('keeps a bare registry_bin as a name to look up on PATH, and resolves a path', async (t) => {
    const folder = await temporaryFolder(t);
    const bareInFile = await writeYaml(folder, 'a/gateway.yaml', 'registry_bin: docker-registry\n');
    const pathInFile = await writeYaml(folder, 'b/gateway.yaml', 'registry_bin: bin/registry\n');
    const cases: [options: { file?: string; env: NodeJS.ProcessEnv }, expected: string][] = [
      [{ env: { GATEWAY_REGISTRY_BIN: 'docker-registry' } }, 'docker-registry'],
      [{ env: { GATEWAY_REGISTRY_BIN: 'registry' } }, 'registry'],
      [{ env: { GATEWAY_REGISTRY_BIN: 'bin/registry' } }, path.join(cwd, 'bin/registry')],
      [{ env: { GATEWAY_REGISTRY_BIN: './registry' } }, path.join(cwd, 'registry')],
      [{ env: { GATEWAY_REGISTRY_BIN: '/usr/bin/docker-registry' } }, path.resolve('/usr/bin/docker-registry')],
      [{ file: bareInFile, env: {} }, 'docker-registry'],
      [{ file: pathInFile, env: {} }, path.join(folder, 'b/bin/registry')],
    ];
    for (const [options, expected] of cases) {
      assert.equal(loadConfig({ ...options, cwd }).config.registryBin, expected, JSON.stringify(options));
    }
  });

  it('returns a frozen config', () => {
    const { config } = loadConfig({ env: {}, cwd });
    assert.ok(Object.isFrozen(config));
    assert.throws(() => {
      (config as Config).auth = 'basic';
    }, TypeError);
    assert.equal(config.auth, 'token');
  });
});

describe('loadConfig errors name the setting both ways', () => {
  const cases: [variable: string, value: string, key: string][] = [
    ['GATEWAY_AUTH', 'foo', 'auth'],
    ['GATEWAY_AUTH', 'Token', 'auth'],
    ['GATEWAY_TOKEN_TTL', '10', 'token_ttl'],
    ['GATEWAY_TOKEN_TTL', '59', 'token_ttl'],
    ['GATEWAY_TOKEN_TTL', '86401', 'token_ttl'],
    ['GATEWAY_TOKEN_TTL', 'abc', 'token_ttl'],
    ['GATEWAY_TOKEN_TTL', '90.5', 'token_ttl'],
    ['GATEWAY_LISTEN', 'nonsense', 'listen'],
    ['GATEWAY_LISTEN', '127.0.0.1:70000', 'listen'],
    ['GATEWAY_UPSTREAM', 'ftp://x', 'upstream'],
    ['GATEWAY_UPSTREAM', 'http://registry:5000/v2', 'upstream'],
    ['GATEWAY_UPSTREAM', 'http://registry:5000/?x=1', 'upstream'],
    ['GATEWAY_UPSTREAM', 'http://user:secret@registry:5000', 'upstream'],
    ['GATEWAY_UPSTREAM', 'registry:5000:x', 'upstream'],
    ['GATEWAY_UPSTREAM', 'not a url', 'upstream'],
    ['GATEWAY_PUBLIC_URL', 'http://x', 'public_url'],
    ['GATEWAY_PUBLIC_URL', 'https://registry.example.com/gateway', 'public_url'],
    ['GATEWAY_PUBLIC_URL', 'registry.example.com', 'public_url'],
    ['GATEWAY_SERVICE', 'two words', 'service'],
    ['GATEWAY_SERVICE', 'a"b', 'service'],
    ['GATEWAY_LOG_LEVEL', 'loud', 'log_level'],
    ['GATEWAY_BASIC_CACHE_TTL', '-1', 'basic_cache_ttl'],
    ['GATEWAY_SHUTDOWN_GRACE', '3601', 'shutdown_grace'],
  ];
  for (const [variable, value, key] of cases) {
    it(`${variable}=${value}`, () => {
      assert.throws(
        () => loadConfig({ env: { [variable]: value }, cwd }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
          assert.ok(error.message.includes(variable), `"${error.message}" should name ${variable}`);
          assert.ok(error.message.replace(variable, '').includes(key), `"${error.message}" should name ${key}`);
          return true;
        },
      );
    });
  }

  it('rejects a YAML file that is not a mapping', async (t) => {
    const folder = await temporaryFolder(t);
    const file = await writeYaml(folder, 'gateway.yaml', '- listen\n- auth\n');
    assertConfigError(() => loadConfig({ file, env: {}, cwd }), [file], 'YAML list');
  });

  it('rejects a missing file, naming it', async (t) => {
    const folder = await temporaryFolder(t);
    const file = path.join(folder, 'missing.yaml');
    assertConfigError(() => loadConfig({ file, env: {}, cwd }), [file], 'missing file');
  });
});

describe('loadConfig warnings', () => {
  it('warns about an unknown GATEWAY_ variable (a likely typo) and nothing else', () => {
    const { warnings } = loadConfig({ env: { GATEWAY_FOO: '1', GATEWAY_AUTH: 'basic', PATH: '/usr/bin', HOME: '/root' }, cwd });
    assert.equal(warnings.length, 1);
    assert.ok(warnings[0]!.includes('GATEWAY_FOO'), warnings[0]);
  });
});

describe('parseListen', () => {
  const accepted: [value: string, expected: ListenAddress][] = [
    ['5443', { host: '0.0.0.0', port: 5443 }],
    [':5443', { host: '0.0.0.0', port: 5443 }],
    ['0', { host: '0.0.0.0', port: 0 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['127.0.0.1:65535', { host: '127.0.0.1', port: 65535 }],
    ['[::1]:5443', { host: '::1', port: 5443 }],
    ['[::]:5443', { host: '::', port: 5443 }],
    ['localhost:8080', { host: 'localhost', port: 8080 }],
    ['gateway.internal:443', { host: 'gateway.internal', port: 443 }],
  ];
  for (const [value, expected] of accepted) {
    it(`${JSON.stringify(value)} -> ${expected.host} port ${expected.port}`, () => {
      assert.deepEqual(parseListen(value), expected);
    });
  }

  const refused = ['nonsense', '', ':', '::1:5443', '[::1]', '[::1]:', '127.0.0.1:', '127.0.0.1:65536', '70000', 'bad_host:80', 'two words:80', '[::1]:5443x', 'host:-1', 'host:80:90'];
  for (const value of refused) {
    it(`refuses ${JSON.stringify(value)}, naming GATEWAY_LISTEN and listen`, () => {
      assertConfigError(() => parseListen(value), ['GATEWAY_LISTEN', '(listen)'], value);
    });
  }
});

it('several upstreams: a comma-separated variable or a YAML list, never the same registry twice', () => {
  const fromEnv = loadConfig({ env: { GATEWAY_UPSTREAM: 'http://r1:5000, http://r2:5000' }, cwd: '/srv' }).config;
  assert.deepEqual(fromEnv.upstreams.map((url) => url.origin), ['http://r1:5000', 'http://r2:5000']);
  assert.throws(() => loadConfig({ env: { GATEWAY_UPSTREAM: 'http://r1:5000,http://r1:5000/' }, cwd: '/srv' }), /GATEWAY_UPSTREAM \(upstream\): lists the same registry twice/);
});
