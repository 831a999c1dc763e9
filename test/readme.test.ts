// The README stays true: every setting is documented, and the worked access examples decide as it says.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseAccessFile } from '../src/access/access-rules.js';
import { settings, settingsMarkdownTable } from '../src/config/config.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('documents every setting with its variable and YAML key', () => {
    for (const setting of settings) {
      assert.match(readme, new RegExp(`\\| \`${setting.env}\` \\| \`${setting.key}\` \\|`), setting.env);
    }
  });

  it('has the Configuration table the settings table generates, row for row (`npx gateway config table` prints it)', () => {
    const section = readme.slice(readme.indexOf('## Configuration'));
    const start = section.indexOf('| variable |');
    assert.ok(start >= 0, 'the Configuration section has a settings table');
    const lines = section.slice(start).split('\n');
    const table = lines.slice(0, lines.findIndex((line) => !line.startsWith('|')));
    assert.deepEqual(table, settingsMarkdownTable().split('\n'));
  });

  it('names exactly the two set-up commands in its quick start', () => {
    const quickStart = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('### Log in'));
    assert.match(quickStart, /^npm start\b/m);
    assert.match(quickStart, /^npm test\b/m);
  });

  it('has three worked access examples whose decisions hold', () => {
    const section = readme.slice(readme.indexOf('Three worked examples'), readme.indexOf('### CI tokens'));
    const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!.replace(/^ {3}/gm, ''));
    assert.equal(blocks.length, 3);
    const decide = (block: string, user: string | null, action: string, repository: string) =>
      parseAccessFile(block, 'README.md').rules.explain({ user }, action, repository);

    const team = blocks[0]!;
    assert.match(decide(team, 'buildbot', 'push', 'app/web').reason, /^allowed by rule 3/);
    assert.match(decide(team, 'buildbot', 'push', 'app/signing').reason, /^denied by rule 4/);
    assert.equal(decide(team, 'bob', 'pull', 'app/web').allowed, true);
    assert.equal(decide(team, 'bob', 'push', 'app/web').allowed, false);

    const personal = blocks[1]!;
    assert.equal(decide(personal, 'alice', 'push', 'alice/tools').allowed, true);
    assert.equal(decide(personal, 'bob', 'push', 'alice/tools').allowed, false);

    const open = blocks[2]!;
    assert.equal(decide(open, null, 'pull', 'public/base').allowed, true);
    assert.equal(decide(open, null, 'push', 'public/base').allowed, false);
    assert.equal(decide(open, null, 'pull', 'private/thing').allowed, false);
    assert.equal(decide(open, 'alice', 'push', 'public/base').allowed, true);
  });
});
