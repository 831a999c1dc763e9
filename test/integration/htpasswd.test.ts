// Tests for the htpasswd file: parsing, edits Apache's htpasswd accepts, the live user store, password input.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { CliError, ConfigError } from '../../src/errors.js';
import {
  addUser,
  formatHtpasswd,
  hashPassword,
  listUsers,
  parseHtpasswd,
  readHtpasswdFile,
  removeUser,
  requireUser,
  UserStore,
  validateUserName,
} from '../../src/auth/htpasswd.js';
import { readPassword } from '../../src/cli/prompt.js';
import { recordingLog } from '../helpers/recording-log.js';

const run = promisify(execFile);

async function temporaryFolder(t: TestContext): Promise<string> {
  const folder = await mkdtemp(path.join(tmpdir(), 'htpasswd-test-'));
  t.after(() => rm(folder, { recursive: true, force: true }));
  return folder;
}

/** One `user:hash` line exactly as Apache's htpasswd prints it (no newline). */
async function apacheLine(flags: string, user: string, password: string): Promise<string> {
  const { stdout } = await run('htpasswd', [flags, user, password]);
  return stdout.trim();
}

/** Exit code of `htpasswd -vb FILE USER PASSWORD`: 0 when Apache's own check accepts the password. */
async function apacheVerify(file: string, user: string, password: string): Promise<number> {
  try {
    await run('htpasswd', ['-vb', file, user, password]);
    return 0;
  } catch (error) {
    return (error as { code: number }).code;
  }
}

const sampleHash = '$2y$05$T4j5ZrwPp38MnQ4RVTmbjehS3IqNi.vNSkcFjDkbaAXJ8W/VQtz5q';
const otherHash = '$2y$05$XrKQkN0EjpFtf98iiVkg0uBQYb6WnScUFJoB/D4xsXjUghLiqOrW2';

describe('parseHtpasswd', () => {
  it('reads users and skips comments and blank lines, with LF or CRLF endings', () => {
    const text = `# gateway users\n\nalice:${sampleHash}\n   \n  # indented comment\nbob:${otherHash}\n`;
    for (const variant of [text, text.replaceAll('\n', '\r\n')]) {
      const parsed = parseHtpasswd(variant);
      assert.deepEqual([...parsed.users], [
        ['alice', sampleHash],
        ['bob', otherHash],
      ]);
      assert.deepEqual(parsed.problems, []);
    }
  });

  it('accepts the $2a$, $2b$ and $2y$ prefixes and a last line without newline', () => {
    const text = `a:${sampleHash.replace('$2y$', '$2a$')}\nb:${sampleHash.replace('$2y$', '$2b$')}\ny:${sampleHash}`;
    assert.deepEqual(parseHtpasswd(text).users.size, 3);
    assert.deepEqual(parseHtpasswd(text).problems, []);
  });

  it('leaves out other hash types, naming the line but never the hash', async () => {
    const sha = await apacheLine('-nbs', 'sha', 'secret-one');
    const md5 = await apacheLine('-nbm', 'md5', 'secret-two');
    const plain = await apacheLine('-nbp', 'plain', 'secret-three');
    const broken = `broken:${sampleHash.slice(0, 40)}`;
    const text = [`ok:${sampleHash}`, sha, md5, plain, broken].join('\n');
    const parsed = parseHtpasswd(text);
    assert.deepEqual([...parsed.users.keys()], ['ok']);
    assert.equal(parsed.problems.length, 4);
    assert.match(parsed.problems[0]!, /^line 2: user "sha" .*SHA-1/);
    assert.match(parsed.problems[1]!, /^line 3: user "md5" .*\$apr1\$/);
    assert.match(parsed.problems[2]!, /^line 4: user "plain" .*plain-text/);
    assert.match(parsed.problems[3]!, /^line 5: user "broken" .*malformed bcrypt/);
    const secrets = [sha, md5, plain, broken].map((line) => line.slice(line.indexOf(':') + 1));
    for (const problem of parsed.problems) {
      for (const secret of [...secrets, 'secret-three']) assert.ok(!problem.includes(secret), problem);
    }
  });

  it('lets the last duplicate win and reports it', () => {
    const parsed = parseHtpasswd(`alice:${sampleHash}\nbob:${sampleHash}\nalice:${otherHash}\n`);
    assert.equal(parsed.users.get('alice'), otherHash);
    assert.deepEqual(parsed.problems, ['line 3: user "alice" is also on line 1; line 3 is used']);
  });

  it('reports a line without a colon without echoing it', () => {
    const parsed = parseHtpasswd(`alice:${sampleHash}\nhunter2\n`);
    assert.deepEqual([...parsed.users.keys()], ['alice']);
    assert.equal(parsed.problems.length, 1);
    assert.match(parsed.problems[0]!, /^line 2: .*no ':'/);
    assert.ok(!parsed.problems[0]!.includes('hunter2'));
  });

  it('reports user names that could not be typed or that hide characters', () => {
    const parsed = parseHtpasswd(`:${sampleHash}\nal ice:${sampleHash}\nzero\u200bwidth:${sampleHash}\n`);
    assert.equal(parsed.users.size, 0);
    assert.deepEqual(
      parsed.problems.map((problem) => problem.slice(0, 7)),
      ['line 1:', 'line 2:', 'line 3:'],
    );
  });

  it('refuses bcrypt costs outside 4..17, which would stall every check', () => {
    const parsed = parseHtpasswd(`slow:${sampleHash.replace('$05$', '$20$')}\n`);
    assert.equal(parsed.users.size, 0);
    assert.match(parsed.problems[0]!, /^line 1: user "slow" .*cost 20/);
  });

  it('round-trips through formatHtpasswd', () => {
    const users = new Map([
      ['alice', sampleHash],
      ['bob', otherHash],
    ]);
    const text = formatHtpasswd(users);
    assert.equal(text, `alice:${sampleHash}\nbob:${otherHash}\n`);
    assert.deepEqual(parseHtpasswd(text).users, users);
  });
});

describe('validateUserName', () => {
  it('returns acceptable names unchanged', () => {
    for (const name of ['alice', 'ci-bot_1.deploy', 'ops@example.com', 'ünïcode', 'x'.repeat(255)]) {
      assert.equal(validateUserName(name), name);
    }
  });

  it('rejects empty, overlong, colon, whitespace, control and invisible characters', () => {
    const hostile = ['', 'x'.repeat(256), 'a:b', 'a b', 'a\tb', 'a\nb', 'a\rb', '#comment'];
    hostile.push('nul\u0000', 'esc\u001b[31m', 'rtl\u202e', 'zw\u200b');
    for (const name of hostile) {
      assert.throws(() => validateUserName(name), CliError, JSON.stringify(name));
    }
  });
});

describe('hashPassword', () => {
  it('writes $2y$ hashes with the requested cost, defaulting to 10', async () => {
    assert.match(await hashPassword('pw', 4), /^\$2y\$04\$[./A-Za-z0-9]{53}$/);
    assert.match(await hashPassword('pw'), /^\$2y\$10\$/);
  });

  it('rejects costs outside 4..17', async () => {
    for (const cost of [3, 18, 10.5, Number.NaN]) {
      await assert.rejects(hashPassword('pw', cost), CliError, String(cost));
    }
  });

  it('rejects empty passwords and passwords bcrypt would cut at 72 bytes', async () => {
    await assert.rejects(hashPassword('', 4), CliError);
    await assert.rejects(hashPassword('a'.repeat(73), 4), CliError);
    // 25 characters but 75 bytes: the limit is in bytes, as bcrypt counts.
    await assert.rejects(hashPassword('€'.repeat(25), 4), CliError);
    assert.match(await hashPassword('a'.repeat(72), 4), /^\$2y\$04\$/);
  });
});

describe('editing the file', () => {
  it('writes hashes that Apache htpasswd verifies, mode 0600, creating the folder', async (t) => {
    const file = path.join(await temporaryFolder(t), 'auth', 'htpasswd');
    assert.equal(await addUser(file, 'alice', 'correct horse', 5), 'added');
    assert.equal(await apacheVerify(file, 'alice', 'correct horse'), 0);
    assert.notEqual(await apacheVerify(file, 'alice', 'wrong horse'), 0);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.match(await readFile(file, 'utf8'), /^alice:\$2y\$05\$[./A-Za-z0-9]{53}\n$/);
  });

  it('keeps every other line byte for byte when adding and updating', async (t) => {
    const file = path.join(await temporaryFolder(t), 'htpasswd');
    await run('htpasswd', ['-cbB', '-C', '5', file, 'alice', 'alice-pw']);
    await run('htpasswd', ['-bB', '-C', '5', file, 'bob', 'bob-pw']);
    const md5Line = await apacheLine('-nbm', 'legacy', 'legacy-pw');
    await writeFile(file, `# team\n${await readFile(file, 'utf8')}${md5Line}\n`);
    const before = (await readFile(file, 'utf8')).split('\n');

    assert.equal(await addUser(file, 'carol', 'carol-pw', 4), 'added');
    assert.equal(await addUser(file, 'bob', 'new-bob-pw', 4), 'updated');

    const after = (await readFile(file, 'utf8')).split('\n');
    assert.equal(after.length, before.length + 1);
    for (const index of [0, 1, 3]) assert.equal(after[index], before[index]); // comment, alice, legacy
    assert.notEqual(after[2], before[2]);
    assert.ok(after[2]!.startsWith('bob:$2y$04$'));
    assert.ok(after[4]!.startsWith('carol:$2y$04$'));
    assert.equal(await apacheVerify(file, 'bob', 'new-bob-pw'), 0);
    assert.notEqual(await apacheVerify(file, 'bob', 'bob-pw'), 0);
    assert.equal(await apacheVerify(file, 'alice', 'alice-pw'), 0);
    assert.equal(await apacheVerify(file, 'carol', 'carol-pw'), 0);
  });

  it('keeps CRLF endings and appends after a last line without newline', async (t) => {
    const file = path.join(await temporaryFolder(t), 'htpasswd');
    await writeFile(file, `alice:${sampleHash}\r\nbob:${otherHash}`);
    await addUser(file, 'carol', 'pw', 4);
    const lines = (await readFile(file, 'utf8')).split('\r\n');
    assert.deepEqual(lines.slice(0, 2), [`alice:${sampleHash}`, `bob:${otherHash}`]);
    assert.match(lines[2]!, /^carol:\$2y\$04\$/);
    assert.equal(lines[3], '');
  });

  it('collapses duplicate lines of the updated user into one', async (t) => {
    const file = path.join(await temporaryFolder(t), 'htpasswd');
    await writeFile(file, `bob:${sampleHash}\nalice:${sampleHash}\nbob:${otherHash}\n`);
    assert.equal(await addUser(file, 'bob', 'pw', 4), 'updated');
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /^bob:\$2y\$04\$/);
    assert.equal(lines[1], `alice:${sampleHash}`);
  });

  it('removes only the named user and lists the rest', async (t) => {
    const file = path.join(await temporaryFolder(t), 'htpasswd');
    await writeFile(file, `# keep me\nalice:${sampleHash}\nbob:${otherHash}\ncarol:${sampleHash}\n`);
    assert.equal(await removeUser(file, 'bob'), true);
    assert.equal(await readFile(file, 'utf8'), `# keep me\nalice:${sampleHash}\ncarol:${sampleHash}\n`);
    assert.equal(await removeUser(file, 'bob'), false);
    assert.deepEqual(await listUsers(file), ['alice', 'carol']);
    assert.equal(await removeUser(path.join(path.dirname(file), 'missing'), 'alice'), false);
  });

  it('keeps concurrent edits from the same process', async (t) => {
    const file = path.join(await temporaryFolder(t), 'htpasswd');
    const names = ['u1', 'u2', 'u3', 'u4', 'u5'];
    await Promise.all(names.map((name) => addUser(file, name, 'pw', 4)));
    assert.deepEqual(await listUsers(file), names);
  });

  it('refuses bad names and passwords before touching the file', async (t) => {
    const file = path.join(await temporaryFolder(t), 'htpasswd');
    await assert.rejects(addUser(file, 'a:b', 'pw', 4), CliError);
    await assert.rejects(addUser(file, 'alice', '', 4), CliError);
    await assert.rejects(addUser(file, 'alice', 'x'.repeat(73), 4), CliError);
    await assert.rejects(stat(file), { code: 'ENOENT' });
  });

  it('reports a missing file as ENOENT when reading', async (t) => {
    const missing = path.join(await temporaryFolder(t), 'missing');
    await assert.rejects(readHtpasswdFile(missing), { code: 'ENOENT' });
    await assert.rejects(listUsers(missing), { code: 'ENOENT' });
  });
});

describe('UserStore', () => {
  it('replaces the whole map on reload: removed users go, changed hashes show', async (t) => {
    const file = path.join(await temporaryFolder(t), 'htpasswd');
    await writeFile(file, `alice:${sampleHash}\nbob:${sampleHash}\n`);
    const store = await UserStore.load(file);
    assert.equal(store.file, file);
    assert.deepEqual(store.users(), ['alice', 'bob']);
    const aliceBefore = store.credentialFingerprint('alice');

    await writeFile(file, `alice:${otherHash}\ncarol:${sampleHash}\n{SHA}junk\n`);
    assert.equal(await store.reload(), true);
    assert.equal(store.problems().length, 1);
    assert.deepEqual(store.users(), ['alice', 'carol']);
    assert.equal(store.hashOf('bob'), undefined);
    assert.equal(store.has('bob'), false);
    assert.equal(store.has('carol'), true);
    assert.equal(store.hashOf('alice'), otherHash);
    assert.equal(store.credentialFingerprint('bob'), undefined);
    assert.notEqual(store.credentialFingerprint('alice'), aliceBefore);
  });

  it('keeps the last good map when the file goes or cannot be read, logging each change of state once', async (t) => {
    const file = path.join(await temporaryFolder(t), 'htpasswd');
    await writeFile(file, `alice:${sampleHash}\n`);
    const log = recordingLog();
    const store = await UserStore.load(file, { logger: log });
    await rm(file);
    assert.equal(await store.reload(), false);
    assert.equal(await store.reload(), false);
    assert.equal(store.hashOf('alice'), sampleHash);
    await mkdir(file);
    assert.equal(await store.reload(), false);
    assert.deepEqual(store.users(), ['alice']);
    assert.equal(store.hashOf('alice'), sampleHash);
    const errors = log.entries.filter((entry) => entry.level === 'error');
    assert.equal(errors.length, 2, 'one error when the file went, one when it turned into a folder');
    assert.ok(errors.every((entry) => entry.fields.file === file));
    assert.match(String(errors[0]!.fields.err), /is missing/);
    assert.match(String(errors[1]!.fields.err), /EISDIR/);

    await rm(file, { recursive: true });
    await writeFile(file, `bob:${sampleHash}\n`);
    assert.equal(await store.reload(), true);
    assert.deepEqual(store.users(), ['bob']);
    assert.match(log.messages('info').at(-1)!, /readable again/);
  });

  it('gives a stable 22-character fingerprint per hash', async (t) => {
    const file = path.join(await temporaryFolder(t), 'htpasswd');
    await writeFile(file, `alice:${sampleHash}\nbob:${sampleHash}\n`);
    const store = await UserStore.load(file);
    const fingerprint = store.credentialFingerprint('alice');
    assert.match(fingerprint ?? '', /^[A-Za-z0-9_-]{22}$/);
    assert.equal(store.credentialFingerprint('alice'), fingerprint);
    assert.equal((await UserStore.load(file)).credentialFingerprint('alice'), fingerprint);
    assert.ok(!fingerprint!.includes(sampleHash.slice(7, 29)));
  });

  it('refuses to load a missing or unreadable file, naming the setting and the file', async (t) => {
    const folder = await temporaryFolder(t);
    const missing = path.join(folder, 'missing');
    await assert.rejects(UserStore.load(missing), (error) => error instanceof ConfigError && error.message === `GATEWAY_HTPASSWD (htpasswd): ${missing} does not exist`);
    await assert.rejects(UserStore.load(folder), (error) => error instanceof ConfigError && error.message === `GATEWAY_HTPASSWD (htpasswd): cannot read ${folder} (EISDIR)`);
  });
});

describe('requireUser', () => {
  it('passes for a user in the file and names the file otherwise', async (t) => {
    const file = path.join(await temporaryFolder(t), 'htpasswd');
    await assert.rejects(requireUser(file, 'ghost'), (error) => error instanceof CliError && error.message.includes(`${file} does not exist`));
    await writeFile(file, `alice:${sampleHash}\n`);
    await requireUser(file, 'alice');
    await assert.rejects(requireUser(file, 'ghost'), (error) => error instanceof CliError && error.message.startsWith(`no user "ghost" in ${file}; add the user first`));
  });
});

/** A stand-in terminal: what the test writes arrives as keystrokes, and raw mode is recorded. */
function fakeTerminal(): PassThrough & { isTTY: true; rawModes: boolean[]; setRawMode(mode: boolean): void } {
  const terminal = Object.assign(new PassThrough(), {
    isTTY: true as const,
    rawModes: [] as boolean[],
    setRawMode(mode: boolean) {
      terminal.rawModes.push(mode);
    },
  });
  return terminal;
}

function collectOutput(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  return { stream, text: () => text };
}

describe('readPassword', () => {
  it('reads all of stdin and strips exactly one trailing newline', async () => {
    const read = (text: string) =>
      readPassword({ fromStdin: true, confirm: true, input: Readable.from([Buffer.from(text)]) });
    assert.equal(await read('s3cret\n'), 's3cret');
    assert.equal(await read('s3cret\r\n'), 's3cret');
    assert.equal(await read('s3cret'), 's3cret');
    assert.equal(await read('two\nlines\n\n'), 'two\nlines\n');
  });

  it('tells the user to pass --password-stdin when stdin is not a terminal', async () => {
    await assert.rejects(
      readPassword({ fromStdin: false, confirm: false, input: Readable.from([]) }),
      (error: unknown) => error instanceof CliError && error.message.includes('--password-stdin'),
    );
  });

  it('prompts on a terminal without echoing, and confirms', async () => {
    const input = fakeTerminal();
    const output = collectOutput();
    const reading = readPassword({ fromStdin: false, confirm: true, input, output: output.stream });
    input.write('s3cx\u007fret\r');
    input.write('s3cret\r');
    assert.equal(await reading, 's3cret');
    assert.equal(output.text(), 'Password: \nRepeat password: \n');
    assert.deepEqual(input.rawModes, [true, false]);
  });

  it('refuses a confirmation that differs', async () => {
    const input = fakeTerminal();
    const reading = readPassword({ fromStdin: false, confirm: true, input, output: collectOutput().stream });
    input.write('one\rtwo\r');
    await assert.rejects(reading, CliError);
    assert.deepEqual(input.rawModes, [true, false]);
  });

  it('stops on Ctrl-C', async () => {
    const input = fakeTerminal();
    const reading = readPassword({ fromStdin: false, confirm: false, input, output: collectOutput().stream });
    input.write('abc\u0003');
    await assert.rejects(reading, (error: unknown) => error instanceof CliError && error.exitCode === 130);
  });
});
