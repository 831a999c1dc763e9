// CI tokens: long-lived, scope-limited credentials used as a login password; the file (hashes of the secrets only): read, write, edit.

import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { copyAccess, formatScope, mergeAccess, parseScope, parseScopePattern, type Access } from '../access/access.js';
import { CliError, FileFormatError } from '../errors.js';
import { editFileExclusively, isMissing, writeFileAtomically } from '../config/files.js';
import { tellRevoked } from './ci-token-revocations.js';
import { validateUserName } from './htpasswd.js';
import { maxGroups, maxOriginLength, originProblem, validOrigin, type SignInOrigin } from './token-origin.js';

export type { SignInOrigin } from './token-origin.js';

export interface CiTokenRecord {
  id: string;
  user: string;
  /**
   * The most the token may do. Empty only for a personal access token (source oidc): the access rules
   * alone decide (anything reading it as a limit grants nothing).
   */
  scopes: Access[];
  createdAt: string;
  /** ISO time after which the token no longer works; null for a token that never expires (never for source oidc). */
  expiresAt: string | null;
  /** sha256 of the secret part, hex. */
  secretHash: string;
  description?: string;
  /**
   * Who issued it: absent for a CI token of an htpasswd user (`gateway token create`), which works only
   * while that user exists; `oidc` for a personal access token from the OIDC sign-in (see SignInOrigin).
   */
  source?: 'oidc';
  /** For source oidc: the sign-in provider's name. */
  provider?: string;
  /** For source oidc: the ID token's subject (`sub`), which owns the token on the sign-in pages. */
  subject?: string;
  /** For source oidc: the access groups the ID token gave at creation; they count at every use. */
  groups?: string[];
}


export interface CreatedCiToken {
  id: string;
  /** `gwt_<id>_<secret>`: shown once, never stored. */
  credential: string;
  record: CiTokenRecord;
}

const credentialPrefix = 'gwt_';
const idAlphabet = 'abcdefghijklmnopqrstuvwxyz234567';
const idLength = 12;
const secretBytes = 32;
const idPattern = /^[a-z2-7]{12}$/;
/** 32 bytes in unpadded base64url are 43 characters. */
const credentialPattern = /^gwt_([a-z2-7]{12})_([A-Za-z0-9_-]{43})$/;
const secretHashPattern = /^[0-9a-f]{64}$/;

/** A century: longer lifetimes are a typo, and far-future dates stop being representable. */
const MAX_TTL_SECONDS = 100 * 365 * 86_400;
const maxDescriptionLength = 200;

/** Actions a CI token may carry, per scope type; anything else would silently grant nothing. */
const grantableActions: Record<string, readonly string[]> = {
  repository: ['pull', 'push', 'delete', '*'],
  registry: ['*'],
};

const ttlUnits: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/** "30d", "12h", "90m", "3600s", "1w" -> seconds; "never" -> null. Command-line input only: the server never calls it. */
export function parseTtl(text: string): number | null {
  const value = text.trim().toLowerCase();
  if (value === 'never') return null;
  const match = /^(\d{1,12})([smhdw])$/.exec(value);
  if (match === null) {
    throw new CliError(`invalid TTL "${text}": use a whole number with s, m, h, d or w (e.g. 30d), or "never"`);
  }
  const seconds = Number(match[1]) * ttlUnits[match[2]!]!;
  if (seconds === 0) throw new CliError(`invalid TTL "${text}": must be longer than zero`);
  if (seconds > MAX_TTL_SECONDS) throw new CliError(`invalid TTL "${text}": longer than 100 years; use "never" instead`);
  return seconds;
}

/**
 * Parses scope arguments such as `repository:app:pull,push`; one value may hold several,
 * space-separated. Throws a CliError naming the first scope a CI token cannot carry.
 */
export function parseCiTokenScopes(values: readonly string[]): Access[] {
  const texts = values.flatMap((value) => value.split(/\s+/)).filter((text) => text !== '');
  return validScopeList(texts);
}

/** Validates each entry as the scope text it stands for (so a name with a space is refused, not split). */
function validScopes(scopes: readonly Access[]): Access[] {
  return validScopeList(scopes.map((access) => formatScope(access)));
}

function validScopeList(texts: readonly string[]): Access[] {
  if (texts.length === 0) throw new CliError('a CI token needs at least one scope, e.g. repository:app:pull');
  return mergeAccess(texts.map(validScope));
}

function validScope(text: string): Access {
  const access = parseScope(text) ?? parseScopePattern(text);
  if (access === undefined) {
    throw new CliError(`invalid scope "${text}": expected repository:NAME:ACTIONS (e.g. repository:app:pull,push; NAME may be a pattern such as app/* or team/**) or registry:catalog:*`);
  }
  const allowed = grantableActions[access.type] ?? [];
  const unknown = access.actions.filter((action) => !allowed.includes(action));
  if (unknown.length > 0) {
    throw new CliError(`invalid scope "${text}": unknown action ${unknown.map((a) => `"${a}"`).join(', ')} (allowed: ${allowed.join(', ')})`);
  }
  return access;
}

export function isCiTokenCredential(password: string): boolean {
  return credentialPattern.test(password);
}

export function splitCredential(password: string): { id: string; secret: string } | undefined {
  const match = credentialPattern.exec(password);
  if (match === null) return undefined;
  return { id: match[1]!, secret: match[2]! };
}

export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

function newId(): string {
  // 256 is a multiple of 32, so masking keeps every character equally likely.
  return [...randomBytes(idLength)].map((byte) => idAlphabet[byte & 31]).join('');
}

// ---------------------------------------------------------------------------------------------
// The file

const isoTime = z.string().refine((text) => !Number.isNaN(Date.parse(text)), 'must be an ISO date and time');

const recordSchema = z.object({
  id: z.string().regex(idPattern, 'must be 12 characters of a-z and 2-7'),
  user: z.string(),
  scopes: z
    .array(z.object({ type: z.string(), name: z.string(), actions: z.array(z.string()) })),
  createdAt: isoTime,
  expiresAt: isoTime.nullable(),
  secretHash: z.string().regex(secretHashPattern, 'must be 64 lowercase hex digits'),
  description: z.string().optional(),
  source: z.literal('oidc', 'must be oidc, or absent').optional(),
  provider: z.string().min(1).max(maxOriginLength).optional(),
  subject: z.string().min(1).max(maxOriginLength).optional(),
  groups: z.array(z.string().min(1).max(maxOriginLength)).max(maxGroups).optional(),
});

const fileSchema = z.object({
  version: z.literal(1, 'must be 1 (the only format this gateway reads)'),
  tokens: z.array(recordSchema),
});

/** Validates the whole file; any problem rejects all of it, so a half-read file never becomes the live set. */
export function parseTokenFile(text: string, file: string): CiTokenRecord[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new FileFormatError(`${file} is not valid JSON: ${(error as Error).message}`);
  }
  const result = fileSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = issue.path.map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`)).join('');
    throw new FileFormatError(`${file}: ${where.replace(/^\./, '') || 'file'}: ${issue.message}`);
  }
  const seen = new Set<string>();
  return result.data.tokens.map((raw, index) => {
    const at = `${file}: tokens[${index}]`;
    if (seen.has(raw.id)) throw new CliError(`${at}: id ${raw.id} appears twice`);
    seen.add(raw.id);
    const problem = originProblem(raw);
    if (problem !== undefined) throw new FileFormatError(`${at}.${problem.key}: ${problem.message}`);
    const scopes = raw.scopes.length === 0 ? [] : rethrowAt(at, () => validScopes(raw.scopes));
    return { ...raw, user: rethrowAt(at, () => validateUserName(raw.user)), scopes };
  });
}

function rethrowAt<T>(at: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof CliError) throw new CliError(`${at}: ${error.message}`);
    throw error;
  }
}

function formatTokenFile(records: readonly CiTokenRecord[]): string {
  return `${JSON.stringify({ version: 1, tokens: records.map(orderedRecord) }, null, 2)}\n`;
}

/** Fixed key order keeps the file readable and diffs small. */
export function orderedRecord(record: CiTokenRecord): CiTokenRecord {
  const ordered: CiTokenRecord = {
    id: record.id,
    user: record.user,
    scopes: record.scopes.map(copyAccess),
    createdAt: record.createdAt,
    expiresAt: record.expiresAt,
    secretHash: record.secretHash,
  };
  if (record.description !== undefined) ordered.description = record.description;
  if (record.source !== undefined) {
    ordered.source = record.source;
    if (record.provider !== undefined) ordered.provider = record.provider;
    if (record.subject !== undefined) ordered.subject = record.subject;
    if (record.groups !== undefined) ordered.groups = [...record.groups];
  }
  return ordered;
}

export function byCreation(a: CiTokenRecord, b: CiTokenRecord): number {
  return a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id);
}

/** A missing file holds no tokens; an unreadable or invalid one throws. */
async function readRecords(file: string): Promise<CiTokenRecord[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (isMissing(error)) return [];
    throw new CliError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return parseTokenFile(text, file);
}

function editRecords<T>(
  file: string,
  change: (records: CiTokenRecord[]) => { records: CiTokenRecord[]; result: T } | { result: T },
): Promise<T> {
  return editFileExclusively(file, async (target) => {
    const outcome = change(await readRecords(target));
    if ('records' in outcome) await writeFileAtomically(target, formatTokenFile(outcome.records));
    return outcome.result;
  });
}

// ---------------------------------------------------------------------------------------------
// Editing

function validDescription(description: string | undefined): string | undefined {
  if (description === undefined) return undefined;
  const trimmed = description.trim();
  if (trimmed === '') return undefined;
  if (trimmed.length > maxDescriptionLength) {
    throw new CliError(`the description is longer than ${maxDescriptionLength} characters`);
  }
  if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(trimmed)) throw new CliError('the description must be one line without control characters');
  return trimmed;
}

function validTtl(ttlSeconds: number | null): number | null {
  if (ttlSeconds === null) return null;
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > MAX_TTL_SECONDS) {
    throw new CliError(`the TTL must be a whole number of seconds from 1 to ${MAX_TTL_SECONDS}, or never`);
  }
  return ttlSeconds;
}

/**
 * A new token, shown once. Without `origin` it is a CI token of an htpasswd user and needs scopes; with
 * it, a personal access token from a sign-in: it must expire, and no scopes leave the limit to the
 * access rules.
 */
export async function createCiToken(
  file: string,
  options: { user: string; scopes: Access[]; ttlSeconds: number | null; description?: string; now?: Date; origin?: SignInOrigin },
): Promise<CreatedCiToken> {
  const user = validateUserName(options.user);
  const origin = options.origin === undefined ? undefined : validOrigin(options.origin);
  const scopes = origin !== undefined && options.scopes.length === 0 ? [] : validScopes(options.scopes);
  const ttlSeconds = validTtl(options.ttlSeconds);
  if (ttlSeconds === null && origin !== undefined) throw new CliError('a personal access token must expire');
  const description = validDescription(options.description);
  const now = options.now ?? new Date();
  const secret = randomBytes(secretBytes).toString('base64url');
  return editRecords(file, (records) => {
    const taken = new Set(records.map((record) => record.id));
    let id = newId();
    while (taken.has(id)) id = newId();
    const record: CiTokenRecord = {
      id,
      user,
      scopes,
      createdAt: now.toISOString(),
      expiresAt: ttlSeconds === null ? null : new Date(now.getTime() + ttlSeconds * 1000).toISOString(),
      secretHash: hashSecret(secret).toString('hex'),
      ...origin,
    };
    if (description !== undefined) record.description = description;
    return {
      records: [...records, record],
      result: { id, credential: `${credentialPrefix}${id}_${secret}`, record: orderedRecord(record) },
    };
  });
}

/**
 * Removes the token; false when no token has that id, or `owned` says the token is not the caller's
 * (the file is then left as it was).
 */
export async function revokeCiToken(file: string, id: string, owned: (record: CiTokenRecord) => boolean = () => true): Promise<boolean> {
  const revoked = await editRecords(file, (records) => {
    const kept = records.filter((record) => record.id !== id || !owned(record));
    if (kept.length === records.length) return { result: false };
    return { records: kept, result: true };
  });
  if (revoked) tellRevoked(file, [id]);
  return revoked;
}

/**
 * Removes every CI token of an htpasswd user (when the user is removed, so that adding the user again
 * does not bring them back); returns how many there were. Personal access tokens of a sign-in
 * provider's user of the same name are someone else's and stay.
 */
export async function revokeCiTokensOfUser(file: string, user: string): Promise<number> {
  const removed = await editRecords(file, (records) => {
    const kept = records.filter((record) => record.user !== user || record.source !== undefined);
    const gone = records.filter((record) => !kept.includes(record)).map((record) => record.id);
    return gone.length === 0 ? { result: [] } : { records: kept, result: gone };
  });
  tellRevoked(file, removed);
  return removed.length;
}

/** Oldest first; an empty list when the file does not exist. */
export async function listCiTokens(file: string): Promise<CiTokenRecord[]> {
  return (await readRecords(file)).sort(byCreation);
}
