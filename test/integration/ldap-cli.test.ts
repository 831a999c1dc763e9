// The gateway command with a directory configured: config check binds as the service account and says what works; access check --groups explains a directory user.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ldapAccessRules, ldapProviderConfig } from '../helpers/ldap-gateway.js';
import { runCli } from '../helpers/run-cli.js';
import { startSlapd, type RunningSlapd } from '../helpers/slapd.js';

describe('gateway commands with a directory provider', () => {
  let slapd: RunningSlapd;
  let dir: string;
  /** No registry needed: config check never contacts the upstream. */
  const env = { GATEWAY_UPSTREAM: 'http://127.0.0.1:9' };
  const check = (file: string) => runCli(['config', 'check', '--config', file], { cwd: dir, env });

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gateway-ldap-cli-'));
    slapd = await startSlapd();
    await writeFile(path.join(dir, 'gateway.yaml'), await ldapProviderConfig(slapd, dir, { tls: 'ldaps' }));
    await writeFile(path.join(dir, 'access.yml'), ldapAccessRules);
  });
  after(async () => {
    await slapd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('config check binds as the service account and says so', async () => {
    const checked = await check(path.join(dir, 'gateway.yaml'));
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, /^configuration is valid:/);
    assert.match(checked.stdout, /providers:\n  - name: ci-tokens\n    type: ci-tokens\n  - name: htpasswd\n    type: htpasswd\n  - name: corp\n    type: ldap\n/);
    assert.match(checked.stderr, new RegExp(`ok: provider corp \\(ldap\\): ${slapd.ldapsUrl} \\(ldaps\\): bound as ${slapd.reader.dn}; user_base_dn ou=people,dc=example,dc=test found`));
    assert.ok(!`${checked.stdout}${checked.stderr}`.includes(slapd.reader.password), 'never the bind password');
  });

  test('config check fails, saying why, when the service account is refused or the directory is down', async () => {
    // Its own folder, so the right password file stays as it is.
    const wrongFiles = await mkdtemp(path.join(dir, 'wrong-'));
    await writeFile(path.join(dir, 'wrong.yaml'), await ldapProviderConfig(slapd, wrongFiles, { tls: 'ldaps', bindPassword: 'not-the-password' }));
    const refused = await check(path.join(dir, 'wrong.yaml'));
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /error: provider corp \(ldap\): .*the directory refused the service account cn=reader,dc=example,dc=test \(check bind_dn and bind_password_file\)/);

    await slapd.down();
    try {
      const down = await check(path.join(dir, 'gateway.yaml'));
      assert.equal(down.code, 1);
      assert.match(down.stderr, /error: provider corp \(ldap\): .*ECONNREFUSED/);
    } finally {
      await slapd.up();
    }
  });

  test('a provider file that cannot be read stops serve and config check, naming the key', async () => {
    await writeFile(path.join(dir, 'missing.yaml'), (await ldapProviderConfig(slapd, dir, { tls: 'ldaps' })).replace(/bind_password_file: .*/, 'bind_password_file: no-such-file'));
    const checked = await check(path.join(dir, 'missing.yaml'));
    assert.equal(checked.code, 2);
    assert.match(checked.stderr, /configuration error: .*missing\.yaml:\d+:\d+: providers\[0\]\.bind_password_file: cannot read the service account password file .*no-such-file \(ENOENT\)/);
  });

  test('access check --groups explains the decision for a directory user', async () => {
    const config = path.join(dir, 'gateway.yaml');
    const allowed = await runCli(['access', 'check', 'alice', 'push', 'app/web', '--config', config, '--groups', 'developers'], { cwd: dir, env });
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /^allowed: allowed by rule 1 \(line \d+\): allow pull, push on app\/\*\* for group developers\n/);
    assert.match(allowed.stdout, /groups given with --groups: developers/);
    const without = await runCli(['access', 'check', 'alice', 'push', 'app/web', '--config', config], { cwd: dir, env });
    assert.equal(without.code, 1);
    const ops = await runCli(['access', 'check', 'bob', 'push', 'app/web', '--config', config, '--groups', 'ops,qa'], { cwd: dir, env });
    assert.equal(ops.code, 1);
    assert.match(ops.stdout, /^denied: no rule allows push on app\/web for bob \(groups: ops, qa\)/);
  });
});
