// The htpasswd user file (bcrypt, as `htpasswd -B` writes it): parse, format, edit, and the live user map.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { PasswordChecker } from './authenticator.js';
import { CliError } from '../errors.js';
import { editFileExclusively, isMissing, writeFileAtomically } from '../config/files.js';
import { WatchedFile, type ContentSummary, type WatchedFileOptions } from '../config/watched-file.js';

export interface ParsedHtpasswd {
  /** user -> bcrypt hash */
  users: Map<string, string>;
  /** One "line N: ..." text per skipped or overridden line; never contains a hash. */
  problems: string[];
}

export const DEFAULT_BCRYPT_COST = 10;
/** The range `htpasswd -B -C` accepts; above it bcryptjs needs seconds per check. */
const MIN_BCRYPT_COST = 4;
const MAX_BCRYPT_COST = 17;
/** bcrypt ignores everything after the first 72 bytes of a password. */
const MAX_PASSWORD_BYTES = 72;

const bcryptHashPattern = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;

type LineEntry =
  | { kind: 'ignored' }
  | { kind: 'no-colon' }
  | { kind: 'entry'; user: string; hash: string };

/** Comments, blank lines and `user:hash` lines, as both parsing and editing see them. */
function readLine(rawLine: string): LineEntry {
  const content = rawLine.replace(/\r?\n?$/, '');
  const trimmed = content.trim();
  if (trimmed === '' || trimmed.startsWith('#')) return { kind: 'ignored' };
  const colon = content.indexOf(':');
  if (colon < 0) return { kind: 'no-colon' };
  return { kind: 'entry', user: content.slice(0, colon), hash: content.slice(colon + 1).trim() };
}

/** Why a user name cannot be used, or undefined when it is fine. */
function userNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'user name is empty';
  if (name.length > 255) return 'user name is longer than 255 characters';
  if (name.includes(':')) return "user name contains ':'";
  if (name.startsWith('#')) return "user name starts with '#', which marks a comment line";
  if (/[\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(name)) return 'user name contains whitespace or control characters';
  return undefined;
}

export function validateUserName(name: string): string {
  const problem = userNameProblem(name);
  if (problem !== undefined) throw new CliError(`invalid user name: ${problem}`);
  return name;
}

/** Names the kind of a rejected hash by its prefix only, so no secret ends up in a log line. */
function describeHashKind(hash: string): string {
  if (hash === '') return 'an empty password field';
  if (hash.startsWith('$2')) return 'a malformed bcrypt hash';
  if (hash.startsWith('$apr1$')) return 'an Apache MD5 ($apr1$) hash';
  if (hash.startsWith('{SHA}')) return 'a SHA-1 ({SHA}) hash';
  if (hash.startsWith('$1$')) return 'an MD5-crypt ($1$) hash';
  if (hash.startsWith('$5$')) return 'a SHA-256-crypt ($5$) hash';
  if (hash.startsWith('$6$')) return 'a SHA-512-crypt ($6$) hash';
  return 'a plain-text or DES-crypt password';
}

/** Why a stored hash is refused, or undefined when it is a usable bcrypt hash. */
function hashProblem(hash: string): string | undefined {
  const match = bcryptHashPattern.exec(hash);
  if (match === null) return `${describeHashKind(hash)}; only bcrypt hashes (htpasswd -B) are accepted`;
  const cost = Number(match[1]);
  if (cost < MIN_BCRYPT_COST || cost > MAX_BCRYPT_COST) {
    return `bcrypt cost ${cost} is outside ${MIN_BCRYPT_COST}..${MAX_BCRYPT_COST}`;
  }
  return undefined;
}

export function parseHtpasswd(text: string): ParsedHtpasswd {
  const users = new Map<string, string>();
  const lineOfUser = new Map<string, number>();
  const problems: string[] = [];
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  lines.forEach((rawLine, index) => {
    const lineNumber = index + 1;
    const line = readLine(rawLine);
    if (line.kind === 'ignored') return;
    if (line.kind === 'no-colon') {
      problems.push(`line ${lineNumber}: skipped: no ':' between user name and password hash`);
      return;
    }
    const nameProblem = userNameProblem(line.user);
    if (nameProblem !== undefined) {
      problems.push(`line ${lineNumber}: skipped: ${nameProblem}`);
      return;
    }
    const problem = hashProblem(line.hash);
    if (problem !== undefined) {
      problems.push(`line ${lineNumber}: user "${line.user}" skipped: ${problem}`);
      return;
    }
    const earlier = lineOfUser.get(line.user);
    if (earlier !== undefined) {
      problems.push(`line ${lineNumber}: user "${line.user}" is also on line ${earlier}; line ${lineNumber} is used`);
    }
    users.set(line.user, line.hash);
    lineOfUser.set(line.user, lineNumber);
  });
  return { users, problems };
}

export function formatHtpasswd(users: ReadonlyMap<string, string>): string {
  let text = '';
  for (const [user, hash] of users) text += `${user}:${hash}\n`;
  return text;
}

/** Throws the file system's error (code ENOENT for a missing file) when the file cannot be read. */
export async function readHtpasswdFile(file: string): Promise<ParsedHtpasswd> {
  return parseHtpasswd(await readFile(file, 'utf8'));
}

function validatePassword(password: string): void {
  if (password.length === 0) throw new CliError('the password must not be empty');
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) {
    throw new CliError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes, and bcrypt would ignore the rest`);
  }
}

function validateCost(cost: number): void {
  if (!Number.isInteger(cost) || cost < MIN_BCRYPT_COST || cost > MAX_BCRYPT_COST) {
    throw new CliError(`bcrypt cost must be a whole number from ${MIN_BCRYPT_COST} to ${MAX_BCRYPT_COST}`);
  }
}

/** bcrypt in a worker thread, in the `$2y$` form `htpasswd -B` writes. */
export async function hashPassword(password: string, cost = DEFAULT_BCRYPT_COST): Promise<string> {
  validatePassword(password);
  validateCost(cost);
  // A pool of its own, closed right away, so a command-line process is free to exit.
  const checker = new PasswordChecker({ maxThreads: 1, maxQueue: 0 });
  try {
    return await checker.hash(password, cost);
  } finally {
    await checker.close();
  }
}

export async function addUser(
  file: string,
  user: string,
  password: string,
  cost = DEFAULT_BCRYPT_COST,
): Promise<'added' | 'updated'> {
  validateUserName(user);
  const hash = await hashPassword(password, cost);
  return editFile(file, (lines, eol) => {
    const newLine = `${user}:${hash}${eol}`;
    const first = lines.findIndex((line) => entryUser(line) === user);
    if (first < 0) {
      const last = lines.at(-1);
      if (last !== undefined && !last.endsWith('\n')) lines[lines.length - 1] = last + eol;
      return { lines: [...lines, newLine], result: 'added' };
    }
    // Earlier duplicates would be dead entries after the update: keep one line, where the first was.
    const kept = lines.flatMap((line, index) => {
      if (index === first) return [newLine];
      return entryUser(line) === user ? [] : [line];
    });
    return { lines: kept, result: 'updated' };
  });
}

/** False when the user (or the file) is not there; the file is then left as it was. */
export async function removeUser(file: string, user: string): Promise<boolean> {
  return editFile(file, (lines) => {
    const kept = lines.filter((line) => entryUser(line) !== user);
    return { lines: kept, result: kept.length !== lines.length };
  });
}

/** Refuses (CliError) unless `user` is in the file: a CI token must belong to a user the gateway knows. */
export async function requireUser(file: string, user: string): Promise<void> {
  const addFirst = `add the user first with \`gateway user add ${user}\`, or name another htpasswd file with --htpasswd`;
  let users: ReadonlyMap<string, string>;
  try {
    ({ users } = await readHtpasswdFile(file));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (isMissing(error)) throw new CliError(`no user "${user}": ${file} does not exist; ${addFirst}`);
    throw new CliError(`cannot read ${file} (${code ?? (error as Error).message}) to check that user "${user}" exists`);
  }
  if (!users.has(user)) throw new CliError(`no user "${user}" in ${file}; ${addFirst}`);
}

/** Sorted user names; throws (ENOENT) for a missing file. */
export async function listUsers(file: string): Promise<string[]> {
  const { users } = await readHtpasswdFile(file);
  return [...users.keys()].sort();
}

function entryUser(rawLine: string): string | undefined {
  const line = readLine(rawLine);
  return line.kind === 'entry' ? line.user : undefined;
}

/** Lines with their own endings, so untouched lines are written back byte for byte. */
function splitKeepingEndings(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

interface Edit<T> {
  lines: string[];
  result: T;
}

function editFile<T>(file: string, change: (lines: string[], eol: string) => Edit<T>): Promise<T> {
  return editFileExclusively(file, async (target) => {
    const text = (await readIfPresent(target)) ?? '';
    const lines = splitKeepingEndings(text);
    const { lines: changed, result } = change([...lines], text.includes('\r\n') ? '\r\n' : '\n');
    const newText = changed.join('');
    if (newText !== text) await writeFileAtomically(target, newText);
    return result;
  });
}

async function readIfPresent(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

interface UserSnapshot {
  users: ReadonlyMap<string, string>;
  problems: readonly string[];
  typicalCost: number | undefined;
  /** Fingerprints computed so far for this map: token requests ask for one every time. */
  fingerprints: Map<string, string>;
}

/**
 * The users of one htpasswd file. A reload swaps in a fresh map as a whole (a removed user is gone
 * at once); a file that goes missing or cannot be read keeps the last good users.
 */
export class UserStore extends WatchedFile<UserSnapshot> {
  constructor(file: string, options?: WatchedFileOptions) {
    super(file, { label: 'htpasswd', holds: 'users', setting: 'htpasswd' }, options);
  }

  /** A loaded store; throws a ConfigError when the file is missing or cannot be read. */
  static async load(file: string, options?: WatchedFileOptions): Promise<UserStore> {
    const store = new UserStore(file, options);
    await store.load();
    return store;
  }

  protected parse(text: string): UserSnapshot {
    const { users, problems } = parseHtpasswd(text);
    return { users, problems, typicalCost: mostCommonCost(users), fingerprints: new Map() };
  }

  /** The gateway creates a missing htpasswd (with an admin user) before loading it. */
  protected contentWhenMissing(): undefined {
    return undefined;
  }

  protected summarize(content: UserSnapshot): ContentSummary {
    return { fields: { users: content.users.size }, warnings: content.problems.map((problem) => `htpasswd ${problem}`) };
  }

  hashOf(user: string): string | undefined {
    return this.content.users.get(user);
  }

  has(user: string): boolean {
    return this.content.users.has(user);
  }

  users(): string[] {
    return [...this.content.users.keys()].sort();
  }

  /** Problems found by the last successful read. */
  problems(): string[] {
    return [...this.content.problems];
  }

  /** The bcrypt cost most users have, so a check for an unknown user can cost the same. */
  typicalCost(): number | undefined {
    return this.content.typicalCost;
  }

  /**
   * A short stable fingerprint of the user's current hash, or undefined: refresh tokens embed it
   * so they die when the password changes or the user goes.
   */
  credentialFingerprint(user: string): string | undefined {
    const { users, fingerprints } = this.content;
    const known = fingerprints.get(user);
    if (known !== undefined) return known;
    const hash = users.get(user);
    if (hash === undefined) return undefined;
    const fingerprint = createHash('sha256').update(hash, 'utf8').digest('base64url').slice(0, 22);
    fingerprints.set(user, fingerprint);
    return fingerprint;
  }
}

function mostCommonCost(users: ReadonlyMap<string, string>): number | undefined {
  const counts = new Map<number, number>();
  for (const hash of users.values()) {
    const cost = Number(hash.slice(4, 6));
    counts.set(cost, (counts.get(cost) ?? 0) + 1);
  }
  let best: number | undefined;
  let bestCount = 0;
  for (const [cost, count] of counts) {
    if (count > bestCount) [best, bestCount] = [cost, count];
  }
  return best;
}
