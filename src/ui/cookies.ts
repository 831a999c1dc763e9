// Signed cookies: HMAC-SHA256 over the cookie's name and value, Set-Cookie lines with Secure, HttpOnly and SameSite, and the Cookie header read.

import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

/** Cookie values this module writes and reads: base64url text (what sign() puts before the dot). */
const valuePattern = /^[A-Za-z0-9_-]{1,4096}$/;
const signaturePattern = /^[A-Za-z0-9_-]{43}$/;
const minKeyBytes = 32;

/**
 * A key for one purpose derived from a secret (HKDF-SHA256): the session cookies' key from the token
 * signing key, so that every gateway sharing certs/ accepts the same cookies and none needs a file of
 * its own. A new secret ends every cookie signed with the old key.
 */
export function deriveKey(secret: string | Buffer, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `registry-gateway ${purpose}`, 32));
}

/**
 * Signs and checks cookie values. The signature covers the cookie's name too, so a value signed for
 * one cookie (a pending sign-in) is refused as another (a session).
 */
export class CookieSigner {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length < minKeyBytes) throw new Error(`a cookie signing key needs at least ${minKeyBytes} bytes`);
    this.#key = Buffer.from(key);
  }

  #mac(name: string, value: string): Buffer {
    return createHmac('sha256', this.#key).update(name).update('\0').update(value).digest();
  }

  /** `VALUE.SIGNATURE`; the value must be base64url text. */
  sign(name: string, value: string): string {
    if (!valuePattern.test(value)) throw new Error('a signed cookie value must be 1 to 4096 base64url characters');
    return `${value}.${this.#mac(name, value).toString('base64url')}`;
  }

  /** The value when the signature is this key's for this cookie name; undefined for anything else. */
  verify(name: string, signed: string | undefined): string | undefined {
    if (signed === undefined) return undefined;
    const dot = signed.lastIndexOf('.');
    if (dot <= 0) return undefined;
    const value = signed.slice(0, dot);
    const signature = signed.slice(dot + 1);
    if (!valuePattern.test(value) || !signaturePattern.test(signature)) return undefined;
    const given = Buffer.from(signature, 'base64url');
    return timingSafeEqual(given, this.#mac(name, value)) ? value : undefined;
  }

  /** A MAC of `text` for another purpose than a cookie (CSRF tokens), base64url. */
  tag(purpose: string, text: string): string {
    return this.#mac(`tag:${purpose}`, text).toString('base64url');
  }
}

/**
 * The cookies of a Cookie header by name. A name sent twice is left out altogether: the gateway
 * never sets two cookies of one name, so a second one was planted (e.g. with another Path).
 */
export function readCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  const twice = new Set<string>();
  if (header === undefined || header.length > 16_384) return cookies;
  for (const part of header.split(';')) {
    const equals = part.indexOf('=');
    if (equals <= 0) continue;
    const name = part.slice(0, equals).trim();
    const value = part.slice(equals + 1).trim();
    if (cookies.has(name)) twice.add(name);
    else cookies.set(name, value);
  }
  for (const name of twice) cookies.delete(name);
  return cookies;
}

export interface CookieAttributes {
  /** Strict for a session; Lax for the sign-in in progress, which must come back from the identity provider's site. */
  sameSite: 'Strict' | 'Lax';
  /** Seconds; absent: until the browser closes. */
  maxAgeSeconds?: number;
}

/**
 * A Set-Cookie value: always Secure, HttpOnly and Path=/ without Domain, which the `__Host-` names
 * the gateway uses require (so no other host or path can set or shadow them).
 */
export function setCookie(name: string, value: string, attributes: CookieAttributes): string {
  const parts = [`${name}=${value}`, 'Path=/', 'Secure', 'HttpOnly', `SameSite=${attributes.sameSite}`];
  if (attributes.maxAgeSeconds !== undefined) parts.push(`Max-Age=${Math.max(0, Math.floor(attributes.maxAgeSeconds))}`);
  return parts.join('; ');
}

/** A Set-Cookie value that removes the cookie. */
export function clearCookie(name: string, sameSite: CookieAttributes['sameSite']): string {
  return setCookie(name, '', { sameSite, maxAgeSeconds: 0 });
}
