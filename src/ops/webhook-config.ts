// The YAML `webhooks:` list: where pushes and deletes are announced, for which repositories, signed with which secret; each mistake named by key and line.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { isMap, isScalar, isSeq, type LineCounter, type Node } from 'yaml';
import { z } from 'zod';
import { compileTagGlob, RepositoryGlob, repositoryGlobProblem, tagGlobProblem } from '../access/rule-set.js';
import { ConfigError } from '../errors.js';

export const webhookEvents = ['push', 'delete'] as const;
export type WebhookEvent = (typeof webhookEvents)[number];

export interface WebhookConfig {
  /** For logs and metrics; `webhook-1` for the first entry without one. */
  name: string;
  /** FILE:LINE:COLUMN of the entry, and of its keys, for errors found after parsing (the secret file). */
  where(key?: string): string;
  url: URL;
  events: WebhookEvent[];
  /** Repository globs; empty: every repository. */
  repositories: RepositoryGlob[];
  /** Tag globs a push must match (a push by digest alone matches none); undefined: every push. */
  tags: RegExp[] | undefined;
  /** The shared secret's file (absolute); its content, trimmed, keys the HMAC-SHA256 signature. */
  secretFile: string;
  /** Extra CA certificates (PEM) trusted for an https receiver. */
  caFile: string | undefined;
  /** One attempt's limit, connect to last byte. */
  timeoutMs: number;
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /** Wait before the first retry; it doubles for each one after (with jitter), up to five minutes. */
  retryMs: number;
  /** Deliveries waiting (fresh or between retries) beyond this drop the oldest. */
  queueSize: number;
}

/** The raw `webhooks:` value of the settings file, and how to find its lines. */
export interface WebhooksSource {
  file: string;
  value: unknown;
  /** FILE:LINE:COLUMN of the list, an entry, or one key's value in it. */
  positionOf(index: number | undefined, key?: string): string;
}

export function webhooksSource(parsed: { file: string; lineCounter: LineCounter; value: Node | null; data: unknown }): WebhooksSource {
  const { file, lineCounter } = parsed;
  const at = (node: Node | null | undefined) => {
    const position = node?.range ? lineCounter.linePos(node.range[0]) : undefined;
    return position ? `${file}:${position.line}:${position.col}` : file;
  };
  return {
    file,
    value: parsed.data,
    positionOf(index, key) {
      if (index === undefined || !isSeq(parsed.value)) return at(parsed.value);
      const entry = parsed.value.items[index] as Node | undefined;
      if (key === undefined || !isMap(entry)) return at(entry);
      const pair = entry.items.find((item) => isScalar(item.key) && item.key.value === key);
      return at((pair?.value as Node | null | undefined) ?? (pair?.key as Node | undefined) ?? entry);
    },
  };
}

const knownKeys = 'name, url, events, repositories, tags, secret_file, ca_file, timeout_seconds, max_attempts, retry_seconds, queue';

const list = (what: string) =>
  z.union([z.string(), z.array(z.string(), `must be a list of ${what}`)], `must be one ${what} or a list of them`).transform((value) => (Array.isArray(value) ? value : [value]));

const number = (min: number, max: number, whole: boolean) => {
  const message = `must be a ${whole ? 'whole ' : ''}number from ${min} to ${max}`;
  const base = z.number(message).min(min, message).max(max, message);
  return whole ? base.int(message) : base;
};

const entrySchema = z.strictObject(
  {
    name: z.string('must be text').regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be 1 to 32 of a-z, 0-9 and -, starting with a letter').optional(),
    url: z.string('must be a URL'),
    events: list('event (push, delete)').optional(),
    repositories: list('repository glob').optional(),
    tags: list('tag glob').optional(),
    secret_file: z.string('must be a file path').min(1, 'must be a file path'),
    ca_file: z.string('must be a file path').min(1, 'must be a file path').optional(),
    timeout_seconds: number(0.05, 300, false).optional(),
    max_attempts: number(1, 50, true).optional(),
    retry_seconds: number(0.01, 3600, false).optional(),
    queue: number(1, 100_000, true).optional(),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown key ${JSON.stringify(issue.keys[0])} (known: ${knownKeys})`
        : issue.path?.length
          ? undefined
          : 'must be a mapping, e.g. - { url: "https://ci.example.com/hook", secret_file: webhook-secret }',
  },
);

const example = 'e.g.\n  webhooks:\n    - url: https://ci.example.com/hooks/registry\n      events: [push]\n      repositories: ["app/**"]\n      secret_file: secrets/ci-webhook';

/** Whether a receiver may be reached over plain http: only on this machine, where nobody can read the wire. */
function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  return host === '::1';
}

/** Why a receiver URL is refused, or undefined. */
function urlProblem(url: URL): string | undefined {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an https:// URL';
  if (url.protocol === 'http:' && !isLoopback(url.hostname)) return 'must be https:// (plain http only to a receiver on this machine: localhost, 127.0.0.0/8, [::1])';
  if (url.username || url.password) return 'must carry no credentials: the receiver checks the signature made with secret_file';
  if (url.hash) return 'must have no #fragment';
  return undefined;
}

/** The webhooks in file order. Throws a ConfigError naming FILE:LINE:COLUMN and `webhooks[i].key`. */
export function parseWebhooks(source: WebhooksSource): WebhookConfig[] {
  if (source.value === null || source.value === undefined) return [];
  if (!Array.isArray(source.value)) throw new ConfigError(`${source.positionOf(undefined)}: webhooks`, `must be a list of receivers, ${example}`);
  const names = new Map<string, number>();
  return source.value.map((raw, index) => {
    const where = (key?: string) => `${source.positionOf(index, key)}: webhooks[${index}]${key === undefined ? '' : `.${key}`}`;
    const fail = (key: string | undefined, reason: string): never => {
      throw new ConfigError(where(key), reason);
    };
    const parsed = entrySchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const key = issue?.code === 'unrecognized_keys' ? undefined : typeof issue?.path[0] === 'string' ? issue.path[0] : undefined;
      return fail(key, issue?.message ?? 'invalid webhook');
    }
    const entry = parsed.data;
    let url: URL;
    try {
      url = new URL(entry.url);
    } catch {
      return fail('url', `${JSON.stringify(entry.url)} is not a URL (expected e.g. https://ci.example.com/hooks/registry)`);
    }
    const problem = urlProblem(url);
    if (problem !== undefined) fail('url', problem);
    const events = entry.events ?? [...webhookEvents];
    if (events.length === 0) fail('events', 'must name at least one event: push, delete');
    for (const event of events) if (!(webhookEvents as readonly string[]).includes(event)) fail('events', `unknown event ${JSON.stringify(event)}; known: ${webhookEvents.join(', ')}`);
    for (const glob of entry.repositories ?? []) {
      const globProblem = glob.includes('{user}') ? 'uses {user}, which only access rules know' : repositoryGlobProblem(glob);
      if (globProblem !== undefined) fail('repositories', `${JSON.stringify(glob)} ${globProblem}`);
    }
    for (const glob of entry.tags ?? []) {
      const tagProblem = tagGlobProblem(glob);
      if (tagProblem !== undefined) fail('tags', `${JSON.stringify(glob)} ${tagProblem}`);
    }
    const name = entry.name ?? `webhook-${index + 1}`;
    const earlier = names.get(name);
    if (earlier !== undefined) fail('name', `${JSON.stringify(name)} is already webhooks[${earlier}]; give each webhook its own name`);
    names.set(name, index);
    const dir = path.dirname(source.file);
    return {
      name,
      where,
      url,
      events: [...new Set(events as WebhookEvent[])],
      repositories: (entry.repositories ?? []).map((glob) => new RepositoryGlob(glob)),
      tags: entry.tags?.map(compileTagGlob),
      secretFile: path.resolve(dir, entry.secret_file),
      caFile: entry.ca_file === undefined ? undefined : path.resolve(dir, entry.ca_file),
      timeoutMs: Math.round((entry.timeout_seconds ?? 10) * 1000),
      maxAttempts: entry.max_attempts ?? 6,
      retryMs: Math.round((entry.retry_seconds ?? 1) * 1000),
      queueSize: entry.queue ?? 1000,
    };
  });
}

/** The secret, read now: a file that is missing, unreadable, empty or too short is a ConfigError naming the key and its line. */
export function readWebhookSecret(config: Pick<WebhookConfig, 'secretFile' | 'where'>): Buffer {
  let text: string;
  try {
    text = readFileSync(config.secretFile, 'utf8');
  } catch (error) {
    throw new ConfigError(config.where('secret_file'), `cannot read ${config.secretFile} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  const secret = text.trim();
  if (secret.length < 16) throw new ConfigError(config.where('secret_file'), `${config.secretFile} must hold a secret of at least 16 characters, e.g. from \`openssl rand -hex 32\``);
  return Buffer.from(secret, 'utf8');
}

/** The CA bundle, read now; a ConfigError naming the key when it cannot be read. */
export function readWebhookCa(config: Pick<WebhookConfig, 'caFile' | 'where'>): Buffer | undefined {
  if (config.caFile === undefined) return undefined;
  try {
    return readFileSync(config.caFile);
  } catch (error) {
    throw new ConfigError(config.where('ca_file'), `cannot read ${config.caFile} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
}

/** What `config check` may print: never the secret, never the URL's path or query (they may carry a key). */
export function describeWebhook(config: WebhookConfig): Record<string, unknown> {
  return { name: config.name, receiver: config.url.origin, events: config.events, repositories: config.repositories.map((glob) => glob.source) };
}
