// The web pages in-process over plain HTTP with a fake browse reader and a fake password authenticator: for tests of the pages alone.

import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import { pino } from 'pino';
import type { Identity } from '../../src/access/access.js';
import { AuthenticatorChain, type PasswordAuthenticator } from '../../src/auth/chain.js';
import type { LoginServices } from '../../src/auth/login.js';
import { LoginThrottle } from '../../src/auth/throttle.js';
import { loadConfig } from '../../src/config/config.js';
import { RegistryUnavailable, type BrowseReader, type DeleteOutcome, type ImageView, type RepositoryList, type RepositoryView, type Viewer } from '../../src/ui/browse/model.js';
import { createWebPages, type WebPages } from '../../src/ui/setup.js';

export const origin = 'https://registry.test';
export const labelText = '<script>alert(1)</script>';

/** alice/alice-password and bob/bob-password; a user is removed by deleting it from `users`. */
export class FakePasswords implements PasswordAuthenticator {
  readonly name = 'htpasswd';
  readonly users = new Map([['alice', 'alice-password'], ['bob', 'bob-password']]);
  async authenticate({ user, password }: { user: string; password: string }) {
    const known = this.users.get(user);
    if (known === undefined) return { kind: 'not-mine' as const };
    return known === password ? { kind: 'yes' as const, identity: { user, credential: `fp-${user}` } } : { kind: 'no' as const, reason: 'wrong password' };
  }
  revalidate({ user, credential }: { user: string; credential: string }): Identity | undefined {
    return this.users.has(user) && credential === `fp-${user}` ? { user, credential } : undefined;
  }
}

const image = (repository: string, tag: string): ImageView => ({
  repository,
  reference: tag,
  tag,
  digest: `sha256:${'ab'.repeat(32)}`,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  manifestJson: JSON.stringify({ annotations: { note: labelText } }, null, 2),
  config: { os: 'linux', architecture: 'amd64', labels: { [labelText]: labelText }, env: [`EVIL=${labelText}`] },
  layers: [{ digest: `sha256:${'cd'.repeat(32)}`, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: 2048 }],
  size: 2048,
  platforms: [],
  referrers: [],
  immutable: tag.startsWith('release-'),
  mayDelete: false,
  problems: [],
});

/** public/hello for everyone; team/app for alice only (who may delete there). */
export class FakeReader implements BrowseReader {
  down = false;
  readonly deleted: string[] = [];
  readonly viewers: Viewer[] = [];

  #visible(viewer: Viewer, name: string): boolean {
    this.viewers.push(viewer);
    if (this.down) throw new RegistryUnavailable('registry down');
    return name === 'public/hello' || (name === 'team/app' && viewer.identity.user === 'alice');
  }

  async listRepositories(viewer: Viewer, query: { search?: string; page: number; perPage: number }): Promise<RepositoryList> {
    const names = ['public/hello', 'team/app'].filter((name) => this.#visible(viewer, name) && name.includes(query.search ?? ''));
    return { repositories: names.map((name) => ({ name, tagCount: 1 })), page: query.page, perPage: query.perPage, total: names.length };
  }

  async repository(viewer: Viewer, name: string, page: { page: number; perPage: number }): Promise<RepositoryView | undefined> {
    if (!this.#visible(viewer, name)) return undefined;
    const tags = ['v1', 'release-1'].map((tag) => ({ tag, digest: `sha256:${'ab'.repeat(32)}`, size: 2048, platforms: [{ platform: 'linux/amd64', digest: `sha256:${'ab'.repeat(32)}` }], immutable: tag.startsWith('release-') }));
    return { name, tags, totalTags: tags.length, ...page, mayDelete: viewer.identity.user === 'alice' };
  }

  async image(viewer: Viewer, name: string, reference: string): Promise<ImageView | undefined> {
    if (!this.#visible(viewer, name) || !['v1', 'release-1', `sha256:${'ab'.repeat(32)}`].includes(reference)) return undefined;
    return { ...image(name, reference), mayDelete: viewer.identity.user === 'alice' };
  }

  async deleteTag(viewer: Viewer, name: string, tag: string): Promise<DeleteOutcome> {
    if (!this.#visible(viewer, name)) return { ok: false, status: 404, reason: 'not found' };
    if (viewer.identity.user !== 'alice') return { ok: false, status: 403, reason: `You may not delete in ${name}.` };
    if (tag.startsWith('release-')) return { ok: false, status: 403, reason: 'The tag is immutable.' };
    this.deleted.push(`${name}:${tag}`);
    return { ok: true };
  }

  async deleteManifest(viewer: Viewer, name: string, digest: string): Promise<DeleteOutcome> {
    return this.deleteTag(viewer, name, digest);
  }
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  setCookies: string[];
}

export interface PagesHarness {
  url: string;
  reader: FakeReader;
  passwords: FakePasswords;
  web: WebPages;
  dir: string;
  request(method: string, target: string, options?: { cookie?: string; headers?: Record<string, string>; form?: Record<string, string | string[]> }): Promise<Answer>;
  close(): Promise<void>;
}

/** The web pages at https://registry.test (Host and Origin say so), served over plain HTTP on loopback. */
export async function startPages(options: { throttle?: LoginThrottle; now?: () => number } = {}): Promise<PagesHarness> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ui-pages-'));
  const { config } = loadConfig({ env: { GATEWAY_PUBLIC_URL: origin, GATEWAY_UPSTREAM: 'http://127.0.0.1:9', GATEWAY_CI_TOKENS: path.join(dir, 'ci-tokens.json') }, cwd: dir });
  const passwords = new FakePasswords();
  const logins = { chain: new AuthenticatorChain([passwords]), throttle: options.throttle ?? new LoginThrottle() } as unknown as LoginServices;
  const reader = new FakeReader();
  const web = (await createWebPages(config, {
    logger: pino({ level: 'silent' }),
    logins,
    users: { has: (user: string) => passwords.users.has(user) },
    ciTokens: { reload: async () => true },
    tokenKeyPem: 'a test key that is long enough to derive cookie keys from',
    reader,
    ...(options.now === undefined ? {} : { now: options.now }),
  }))!;
  const app = express();
  app.use(web.handler);
  app.use((_req, res) => void res.status(404).json({ errors: [{ code: 'NOT_FOUND' }] }));
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    reader,
    passwords,
    web,
    dir,
    request(method, target, { cookie, headers = {}, form } = {}) {
      const body = form === undefined ? undefined : new URLSearchParams(Object.entries(form).flatMap(([key, value]) => [value].flat().map((v) => [key, v]))).toString();
      return new Promise((resolve, reject) => {
        const req = http.request(`${url}${target}`, {
          method,
          headers: {
            host: 'registry.test',
            ...(cookie ? { cookie } : {}),
            ...(body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded', origin, 'sec-fetch-site': 'same-origin' }),
            ...headers,
          },
        }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), setCookies: res.headers['set-cookie'] ?? [] }));
        });
        req.on('error', reject);
        req.end(body);
      });
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      web.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** `name=value` of the Set-Cookie line for `name` (the last one), or undefined. */
export function cookieOf(answer: Answer, name: string): string | undefined {
  return answer.setCookies.filter((line) => line.startsWith(`${name}=`)).at(-1)?.split(';')[0];
}

export const csrfOf = (body: string) => /name="csrf" value="([A-Za-z0-9_-]+)"/.exec(body)?.[1] ?? '';
