// ACME settings: defaults, the domain taken from public_url, the challenge chosen, and every bad value named.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../src/config/config.js';
import { ConfigError } from '../src/errors.js';
import { renewalTime } from '../src/tls/acme/manager.js';

const cwd = '/srv/gateway';
const load = (env: NodeJS.ProcessEnv) => loadConfig({ env, cwd }).config;

function refused(env: NodeJS.ProcessEnv, names: string[]): void {
  assert.throws(
    () => load(env),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      for (const name of names) assert.ok(error.message.includes(name), `"${error.message}" should name ${name}`);
      return true;
    },
  );
}

describe('ACME settings', () => {
  it('are off by default, and ACME variables without GATEWAY_ACME=on change nothing', () => {
    assert.equal(load({}).acme, undefined);
    assert.equal(load({ GATEWAY_ACME_DOMAINS: 'not a host!', GATEWAY_ACME_CHALLENGE: 'http-01' }).acme, undefined);
  });

  it("take the domain from GATEWAY_PUBLIC_URL, Let's Encrypt production and tls-alpn-01 by default", () => {
    const { acme } = load({ GATEWAY_ACME: 'on', GATEWAY_PUBLIC_URL: 'https://Registry.Example.com' });
    assert.deepEqual(acme, {
      domains: ['registry.example.com'],
      email: undefined,
      directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory',
      caFile: undefined,
      challenge: 'tls-alpn-01',
    });
  });

  it('take several domains, an e-mail, a CA file relative to the folder, and http-01 when the HTTP listener is set', () => {
    const config = load({
      GATEWAY_ACME: 'on',
      GATEWAY_ACME_DOMAINS: 'registry.example.com, docker.example.com,registry.example.com',
      GATEWAY_ACME_EMAIL: 'ops@example.com',
      GATEWAY_ACME_CA: 'pebble.pem',
      GATEWAY_HTTP_LISTEN: '0.0.0.0:80',
    });
    assert.deepEqual(config.acme?.domains, ['registry.example.com', 'docker.example.com']);
    assert.equal(config.acme?.email, 'ops@example.com');
    assert.equal(config.acme?.caFile, path.join(cwd, 'pebble.pem'));
    assert.equal(config.acme?.challenge, 'http-01');
    assert.deepEqual(config.httpListen, { host: '0.0.0.0', port: 80 });
    assert.equal(load({ GATEWAY_ACME: 'on', GATEWAY_ACME_DOMAINS: 'a.example.com', GATEWAY_HTTP_LISTEN: '80', GATEWAY_ACME_CHALLENGE: 'tls-alpn-01' }).acme?.challenge, 'tls-alpn-01');
  });

  it('refuse what no ACME CA would issue, naming the setting', () => {
    refused({ GATEWAY_ACME: 'on' }, ['GATEWAY_ACME_DOMAINS', 'GATEWAY_PUBLIC_URL']);
    refused({ GATEWAY_ACME: 'on', GATEWAY_ACME_DOMAINS: '203.0.113.7' }, ['GATEWAY_ACME_DOMAINS', 'IP address']);
    refused({ GATEWAY_ACME: 'on', GATEWAY_ACME_DOMAINS: '*.example.com' }, ['GATEWAY_ACME_DOMAINS', 'dns-01']);
    refused({ GATEWAY_ACME: 'on', GATEWAY_ACME_DOMAINS: 'localhost' }, ['GATEWAY_ACME_DOMAINS', 'fully qualified']);
    refused({ GATEWAY_ACME: 'on', GATEWAY_ACME_DOMAINS: 'bad_name.example.com' }, ['GATEWAY_ACME_DOMAINS']);
    refused({ GATEWAY_ACME: 'on', GATEWAY_PUBLIC_URL: 'https://203.0.113.7' }, ['GATEWAY_ACME_DOMAINS']);
    refused({ GATEWAY_ACME: 'on', GATEWAY_ACME_DOMAINS: 'a.example.com', GATEWAY_ACME_EMAIL: 'ops' }, ['GATEWAY_ACME_EMAIL', 'e-mail']);
    refused({ GATEWAY_ACME: 'on', GATEWAY_ACME_DOMAINS: 'a.example.com', GATEWAY_ACME_DIRECTORY: 'http://acme.example.com/dir' }, ['GATEWAY_ACME_DIRECTORY', 'https']);
    refused({ GATEWAY_ACME: 'on', GATEWAY_ACME_DOMAINS: 'a.example.com', GATEWAY_ACME_CHALLENGE: 'dns-01' }, ['GATEWAY_ACME_CHALLENGE']);
    refused({ GATEWAY_ACME: 'on', GATEWAY_ACME_DOMAINS: 'a.example.com', GATEWAY_ACME_CHALLENGE: 'http-01' }, ['GATEWAY_ACME_CHALLENGE', 'GATEWAY_HTTP_LISTEN']);
    refused({ GATEWAY_ACME: 'maybe' }, ['GATEWAY_ACME']);
    refused({ GATEWAY_HTTP_LISTEN: '0.0.0.0:99999' }, ['GATEWAY_HTTP_LISTEN']);
  });
});

describe('ACME renewal time', () => {
  it('is when a third of the lifetime is left, spread a little earlier, never later', () => {
    const notBefore = new Date('2026-01-01T00:00:00Z');
    const notAfter = new Date('2026-04-01T00:00:00Z'); // 90 days
    const third = notAfter.getTime() - (notAfter.getTime() - notBefore.getTime()) / 3;
    assert.equal(renewalTime({ notBefore, notAfter }, 0), third);
    const earliest = renewalTime({ notBefore, notAfter }, 1);
    assert.ok(earliest < third && third - earliest <= 2 * 24 * 3600 * 1000, 'at most about 2 days earlier for 90 days');
  });
});
