// One conversation with an LDAP directory: connect (LDAPS or StartTLS), bind, search, all under time limits; errors sorted into refused and unreachable.

import net from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { Client, Entry } from 'ldapts';
import { ldapts } from './ldap-filter.js';

export interface DirectoryAddress {
  /** ldap://HOST[:PORT] or ldaps://HOST[:PORT] */
  url: string;
  tls: 'ldaps' | 'starttls' | 'none';
  /** PEM CA bundle; undefined: the system's CAs. */
  ca: string | undefined;
  /** Connect, StartTLS and each operation. */
  timeoutMs: number;
}

/** The directory could not be asked: down, unreachable, too slow, TLS refused, or it refused the service account. */
export class DirectoryUnavailable extends Error {
  override readonly name = 'DirectoryUnavailable';
}

/** A search matched more entries than it may (a user name must find one entry). */
export class TooManyEntries extends Error {
  override readonly name = 'TooManyEntries';
}

/**
 * Result codes that mean the directory heard the bind and said no to these credentials
 * (inappropriateAuthentication, invalidCredentials, insufficientAccessRights, unwillingToPerform:
 * wrong password, locked, expired or disabled accounts). Anything else means it could not answer.
 */
const refusedBindCodes = new Set([48, 49, 50, 53]);

function describe(error: unknown): string {
  if (error instanceof ldapts().ResultCodeError) return `${error.name.replace(/Error$/, '')} (result code ${error.code})`;
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && !message.includes(code) ? `${message} (${code})` : message;
}

/** Settles with the promise, or rejects once `ms` have passed, calling `onTimeout` first. */
async function within<T>(promise: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new DirectoryUnavailable(`${what} took longer than ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** TLS options that check the certificate against the URL's host, also for StartTLS (where ldapts knows no host). */
function tlsOptions(address: DirectoryAddress, host: string): ConnectionOptions {
  const options: ConnectionOptions = { host, minVersion: 'TLSv1.2' };
  if (address.ca !== undefined) options.ca = address.ca;
  // SNI takes names only; for an IP address the certificate is still checked against `host`.
  if (net.isIP(host) === 0) options.servername = host;
  return options;
}

/**
 * One connection, opened with open(), closed with close(). Every step has the configured time limit,
 * also the TLS handshake of StartTLS, which the client library would otherwise wait on forever.
 */
export class DirectorySession {
  readonly #client: Client;
  readonly #timeoutMs: number;

  private constructor(client: Client, timeoutMs: number) {
    this.#client = client;
    this.#timeoutMs = timeoutMs;
  }

  static async open(address: DirectoryAddress): Promise<DirectorySession> {
    const host = new URL(address.url).hostname.replace(/^\[|\]$/g, '');
    const tls = tlsOptions(address, host);
    const client = new (ldapts().Client)({
      url: address.url,
      timeout: address.timeoutMs,
      connectTimeout: address.timeoutMs,
      ...(address.tls === 'ldaps' ? { tlsOptions: tls } : {}),
    });
    const session = new DirectorySession(client, address.timeoutMs);
    if (address.tls === 'starttls') {
      try {
        await session.#step(client.startTLS(tls), 'StartTLS');
      } catch (error) {
        await session.close();
        throw error;
      }
    }
    return session;
  }

  async #step<T>(operation: Promise<T>, what: string): Promise<T> {
    try {
      // The library's own limit covers operations; this one also the connect and TLS steps around them.
      return await within(operation, this.#timeoutMs * 2, what, () => void this.close());
    } catch (error) {
      if (error instanceof DirectoryUnavailable || error instanceof ldapts().ResultCodeError) throw error;
      throw new DirectoryUnavailable(`${what}: ${describe(error)}`);
    }
  }

  /** True when the directory accepts the credentials, false when it refuses them; throws DirectoryUnavailable when it cannot say. */
  async bind(dn: string, password: string): Promise<boolean> {
    // An empty password is an unauthenticated bind (RFC 4513 5.1.2), which many directories accept for any DN.
    if (password.length === 0 || dn.length === 0) return false;
    try {
      await this.#step(this.#client.bind(dn, password), 'bind');
      return true;
    } catch (error) {
      const { ResultCodeError } = ldapts();
      if (error instanceof ResultCodeError && refusedBindCodes.has(error.code)) return false;
      if (error instanceof ResultCodeError) throw new DirectoryUnavailable(`bind: ${describe(error)}`);
      throw error;
    }
  }

  /**
   * Entries found; TooManyEntries past `maxEntries` or past the directory's own size limit;
   * DirectoryUnavailable when the search cannot be done. No size limit is sent: given one, the client
   * library hands back a truncated result (sizeLimitExceeded) as a success, also when the server's
   * own limit cut it, and a truncated answer must never pass for a whole one.
   */
  async search(base: string, options: { scope: 'base' | 'one' | 'sub'; filter: string; attributes: string[]; maxEntries: number; binary?: string[] }): Promise<Entry[]> {
    try {
      const result = await this.#step(
        this.#client.search(base, {
          scope: options.scope,
          filter: options.filter,
          attributes: options.attributes,
          timeLimit: Math.ceil(this.#timeoutMs / 1000),
          derefAliases: 'never',
          explicitBufferAttributes: options.binary ?? [],
        }),
        'search',
      );
      if (result.searchEntries.length > options.maxEntries) throw new TooManyEntries(`more than ${options.maxEntries} entries`);
      return result.searchEntries;
    } catch (error) {
      const { ResultCodeError, SizeLimitExceededError } = ldapts();
      if (error instanceof SizeLimitExceededError) throw new TooManyEntries('more entries than the directory returns at once');
      if (error instanceof ResultCodeError) throw new DirectoryUnavailable(`search under ${base}: ${describe(error)}`);
      throw error;
    }
  }

  async close(): Promise<void> {
    // Not awaited for long: a directory that stopped answering must not hold the caller.
    await within(this.#client.unbind(), this.#timeoutMs, 'unbind', () => {}).catch(() => {});
  }
}

/** The values of an attribute, by name ignoring case, as text (binary values as hex). */
export function attributeValues(entry: Entry, attribute: string): string[] {
  const wanted = attribute.toLowerCase();
  const key = Object.keys(entry).find((name) => name.toLowerCase() === wanted && name !== 'dn');
  if (key === undefined) return [];
  const value = entry[key]!;
  const list = Array.isArray(value) ? value : [value];
  return list.map((item) => (Buffer.isBuffer(item) ? item.toString('hex') : item));
}
