// `gateway config check` refuses what `serve` refuses, with the same message naming the setting and the file.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';

const cli = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the gateway command; with `readOnly`, inside a mount namespace where that folder is mounted read-only (as compose's `:ro`). */
function gateway(args: string[], options: { cwd: string; env: Record<string, string>; readOnly?: string }): Promise<Run> {
  const [command, argv] = options.readOnly
    ? ['unshare', ['-rm', 'sh', '-c', 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', options.readOnly, process.execPath, cli, ...args]]
    : [process.execPath, [cli, ...args]];
  return new Promise((resolve) => {
    execFile(command, argv, { cwd: options.cwd, env: { PATH: process.env.PATH ?? '', ...options.env }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('config check runs every check serve runs, short of binding the port', () => {
  let dir: string;
  /** A configuration serve accepts: certificates, users and an upstream (so no registry is needed). */
  const valid = (): Record<string, string> => ({
    GATEWAY_LISTEN: '127.0.0.1:0',
    GATEWAY_UPSTREAM: 'http://127.0.0.1:9',
    GATEWAY_TLS_CERT: 'tls/server.crt',
    GATEWAY_TLS_KEY: 'tls/server.key',
    GATEWAY_TOKEN_KEY: 'tls/token.key',
    GATEWAY_TOKEN_CERT: 'tls/token.crt',
    GATEWAY_HTPASSWD: 'users/htpasswd',
    GATEWAY_CI_TOKENS: 'users/ci-tokens.json',
  });

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-check-'));
    const made = await gateway(['certs', '--dir', 'tls', '--host', 'localhost'], { cwd: dir, env: {} });
    assert.equal(made.code, 0, made.stderr);
    await mkdir(path.join(dir, 'users'));
    await writeFile(path.join(dir, 'users', 'htpasswd'), `alice:${bcrypt.hashSync('alice-password', 4)}\n`);
    await writeFile(path.join(dir, 'broken-access.yml'), 'rules:\n  - users: [bob]\n    actions: [fly]\n');
    await writeFile(path.join(dir, 'not-pem.crt'), 'this is no certificate\n');
    await writeFile(path.join(dir, 'not-pem.key'), 'this is no key\n');
    await writeFile(path.join(dir, 'broken-tokens.json'), '{"version": 1, "tokens": [\n');
    await writeFile(path.join(dir, 'a-file'), '');
    await mkdir(path.join(dir, 'empty-certs'));
    await mkdir(path.join(dir, 'empty-users'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('a valid configuration passes', async () => {
    const ok = await gateway(['config', 'check'], { cwd: dir, env: valid() });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^configuration is valid:/);
  });

  /** `expected` gets the temp folder escaped for a regular expression. */
  const cases: { name: string; env: Record<string, string | undefined>; expected: (dir: string) => RegExp; readOnly?: string }[] = [
    {
      name: 'an access file with a mistake: its line and reason',
      env: { GATEWAY_ACCESS: 'broken-access.yml' },
      expected: (d) => new RegExp(`^gateway: configuration error: GATEWAY_ACCESS \\(access\\): ${d}/broken-access\\.yml:3: .*fly`),
    },
    { name: 'an access file that was named but does not exist', env: { GATEWAY_ACCESS: 'nowhere.yml' }, expected: (d) => new RegExp(`GATEWAY_ACCESS \\(access\\): ${d}/nowhere\\.yml does not exist`) },
    {
      name: 'a TLS certificate path that does not exist while its key does',
      env: { GATEWAY_TLS_CERT: 'tls/missing.crt' },
      expected: (d) => new RegExp(`GATEWAY_TLS_CERT \\(tls_cert\\): ${d}/tls/missing\\.crt is missing while ${d}/tls/server\\.key exists`),
    },
    {
      name: 'TLS files named but absent, which serve would not generate',
      env: { GATEWAY_TLS_CERT: 'elsewhere/my.crt', GATEWAY_TLS_KEY: 'elsewhere/my.key' },
      expected: (d) => new RegExp(`GATEWAY_TLS_CERT \\(tls_cert\\): ${d}/elsewhere/my\\.crt does not exist`),
    },
    {
      name: 'a registry binary that does not exist',
      env: { GATEWAY_UPSTREAM: undefined, GATEWAY_REGISTRY_BIN: '/nonexistent/registry' },
      expected: () => /GATEWAY_REGISTRY_BIN \(registry_bin\): \/nonexistent\/registry is not an executable file.*apt-get install docker-registry/,
    },
    { name: 'a certificate that is not PEM', env: { GATEWAY_TLS_CERT: 'not-pem.crt', GATEWAY_TLS_KEY: 'tls/server.key' }, expected: (d) => new RegExp(`GATEWAY_TLS_CERT \\(tls_cert\\): ${d}/not-pem\\.crt is not a PEM certificate$`, 'm') },
    { name: 'a private key that is not PEM', env: { GATEWAY_TLS_KEY: 'not-pem.key' }, expected: (d) => new RegExp(`GATEWAY_TLS_KEY \\(tls_key\\): ${d}/not-pem\\.key is not a PEM private key$`, 'm') },
    {
      name: 'a TLS key that does not match its certificate: both files named',
      env: { GATEWAY_TLS_KEY: 'tls/token.key' },
      expected: (d) => new RegExp(`GATEWAY_TLS_KEY \\(tls_key\\): ${d}/tls/token\\.key is not the private key of the certificate ${d}/tls/server\\.crt`),
    },
    {
      name: 'a token signing key that does not match its certificate: both files named',
      env: { GATEWAY_TOKEN_KEY: 'tls/server.key' },
      expected: (d) => new RegExp(`GATEWAY_TOKEN_KEY \\(token_key\\): ${d}/tls/server\\.key is not the private key of the certificate ${d}/tls/token\\.crt`),
    },
    { name: 'an htpasswd that cannot be read', env: { GATEWAY_HTPASSWD: 'users' }, expected: (d) => new RegExp(`GATEWAY_HTPASSWD \\(htpasswd\\): cannot read ${d}/users \\(EISDIR\\)`) },
    {
      name: 'a CI tokens file that is not valid JSON',
      env: { GATEWAY_CI_TOKENS: 'broken-tokens.json' },
      expected: (d) => new RegExp(`GATEWAY_CI_TOKENS \\(ci_tokens\\): ${d}/broken-tokens\\.json is not valid JSON`),
    },
    { name: 'a data folder that is a file', env: { GATEWAY_UPSTREAM: undefined, GATEWAY_DATA_DIR: 'a-file' }, expected: (d) => new RegExp(`GATEWAY_DATA_DIR \\(data_dir\\): ${d}/a-file is not a folder`) },
    {
      name: 'certificates to generate in a read-only folder (compose without `run --rm certs`)',
      env: { GATEWAY_TLS_CERT: 'empty-certs/server.crt', GATEWAY_TLS_KEY: 'empty-certs/server.key' },
      readOnly: 'empty-certs',
      expected: (d) =>
        new RegExp(
          `GATEWAY_TLS_CERT \\(tls_cert\\): ${d}/empty-certs/server\\.crt does not exist and ${d}/empty-certs is read-only \\(EROFS\\); ` +
            'create them first with `gateway certs` \\(under compose: `docker compose run --rm certs`\\)',
        ),
    },
    {
      name: 'users to create in a read-only folder (compose without `run --rm user add admin`)',
      env: { GATEWAY_HTPASSWD: 'empty-users/htpasswd' },
      readOnly: 'empty-users',
      expected: (d) =>
        new RegExp(
          `GATEWAY_HTPASSWD \\(htpasswd\\): ${d}/empty-users/htpasswd does not exist and ${d}/empty-users is read-only \\(EROFS\\); ` +
            'create it first with `gateway user add admin` \\(under compose: `docker compose run --rm user add admin`\\)',
        ),
    },
  ];

  for (const { name, env: changes, expected, readOnly } of cases) {
    test(`${name}: config check and serve refuse it alike`, async () => {
      const env = valid();
      for (const [key, value] of Object.entries(changes)) {
        if (value === undefined) delete env[key];
        else env[key] = value;
      }
      const options = { cwd: dir, env, readOnly: readOnly && path.join(dir, readOnly) };
      const checked = await gateway(['config', 'check'], options);
      assert.equal(checked.code, 2, `config check must refuse: ${checked.stdout}${checked.stderr}`);
      assert.match(checked.stderr, expected(dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      assert.doesNotMatch(checked.stderr, /\n\s+at .*\.js:\d+/, 'no stack trace');
      const served = await gateway(['serve'], options);
      assert.equal(served.code, 2, `serve must refuse: ${served.stdout}${served.stderr}`);
      assert.equal(served.stderr, checked.stderr, 'the same message');
    });
  }
});
