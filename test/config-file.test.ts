// The YAML settings file: its mistakes are reported against the file, line and column, with the offending line.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { loadConfig } from '../src/config/config.js';
import { ConfigError } from '../src/errors.js';

const cwd = path.resolve('/srv/gateway');

async function temporaryFolder(t: TestContext): Promise<string> {
  const folder = await mkdtemp(path.join(tmpdir(), 'config-file-test-'));
  t.after(() => rm(folder, { recursive: true, force: true }));
  return folder;
}

async function writeYaml(folder: string, text: string): Promise<string> {
  const file = path.join(folder, 'gateway.yaml');
  await writeFile(file, text);
  return file;
}

function assertConfigError(action: () => unknown, names: string[], label: string): void {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof ConfigError, `${label}: expected a ConfigError, got ${String(error)}`);
    for (const name of names) assert.ok(error.message.includes(name), `${label}: "${error.message}" should name ${name}`);
    return true;
  });
}

describe('the YAML settings file', () => {
  it('reports a bad value from the YAML file against the file, line and key, not the variable', async (t) => {
    const folder = await temporaryFolder(t);
    const cases: [text: string, expected: RegExp][] = [
      ['token_ttl: 10\n', /gateway\.yaml:1:12: token_ttl: must be a whole number from 60 to 86400$/],
      ['auth: basic\ntoken_ttl: "abc"\n', /gateway\.yaml:2:12: token_ttl: must be a whole number from 60 to 86400$/],
      ['# comment\n\nlisten: nonsense\n', /gateway\.yaml:3:9: listen: "nonsense" is not HOST:PORT/],
      ['upstream:\n  - http://r1:5000\n  - ftp://r2\n', /gateway\.yaml:2:3: upstream: must be an http:\/\/ or https:\/\/ URL$/],
      ['service: [a, b]\n', /gateway\.yaml:1:10: service: must be text$/],
    ];
    for (const [text, expected] of cases) {
      const file = await writeYaml(folder, text);
      assert.throws(
        () => loadConfig({ file, env: {}, cwd }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.ok(error.message.startsWith(file), `${error.message} should start with ${file}`);
          assert.match(error.message, expected);
          assert.doesNotMatch(error.message, /GATEWAY_/, 'the variable was not set, so it is not what to fix');
          return true;
        },
        text,
      );
    }
  });

  it('reports a bad variable against the variable even when the file sets the same key well', async (t) => {
    const folder = await temporaryFolder(t);
    const file = await writeYaml(folder, 'token_ttl: 300\n');
    assertConfigError(() => loadConfig({ file, env: { GATEWAY_TOKEN_TTL: 'abc' }, cwd }), ['GATEWAY_TOKEN_TTL (token_ttl): must be a whole number'], 'variable');
  });

  it('rejects an unknown YAML key, naming it, the file and its line', async (t) => {
    const folder = await temporaryFolder(t);
    const file = await writeYaml(folder, 'auth: basic\nlisen: 127.0.0.1:5443\n');
    assertConfigError(() => loadConfig({ file, env: {}, cwd }), ['"lisen"', `${file}:2:1:`], 'unknown key');
  });

  it('rejects a file that is not valid YAML with file:line:column, the reason and the offending line', async (t) => {
    const folder = await temporaryFolder(t);
    const cases: [text: string, position: string, reason: RegExp, shown: string][] = [
      ['listen: [unclosed\nauth: basic\n', '2:1', /Flow sequence .* end with a \]/, 'listen: [unclosed'],
      ['auth: basic\nauth: token\n', '2:1', /Map keys must be unique/, 'auth: token'],
      ['auth: basic\nservice: "open\nlog_level: info\n', '4:1', /Missing closing "quote/, 'log_level: info'],
      ['\tlisten: 5443\n', '1:1', /Tabs are not allowed/, '\tlisten: 5443'],
    ];
    for (const [text, position, reason, shown] of cases) {
      const file = await writeYaml(folder, text);
      assert.throws(
        () => loadConfig({ file, env: {}, cwd }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.ok(error.message.startsWith(`${file}:${position}: not valid YAML: `), error.message);
          assert.match(error.message, reason);
          assert.doesNotMatch(error.message, /column \d+:$/, 'nothing cut off after the position');
          assert.ok(error.message.split('\n').some((line) => line.trim() === shown.trim()), `${error.message} should show ${shown}`);
          return true;
        },
        text,
      );
    }
  });
});
