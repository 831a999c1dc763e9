// Reads credentials out of an Authorization header; decides nothing about them.

import { RegistryError } from './errors.js';

export interface BasicCredentials {
  user: string;
  password: string;
}

export type PresentedCredentials =
  | { kind: 'none' }
  | { kind: 'basic'; credentials: BasicCredentials }
  | { kind: 'bearer'; token: string };

/** Longest Authorization value worth decoding; real tokens are a few KiB. */
const maxAuthorizationLength = 16 * 1024;

export function readAuthorization(header: string | undefined): PresentedCredentials {
  if (header === undefined || header === '') return { kind: 'none' };
  if (header.length > maxAuthorizationLength) throw malformed();
  const space = header.indexOf(' ');
  const scheme = (space === -1 ? header : header.slice(0, space)).toLowerCase();
  const value = space === -1 ? '' : header.slice(space + 1).trim();
  if (scheme === 'bearer') {
    if (!/^[A-Za-z0-9._~+/=-]+$/.test(value)) throw malformed();
    return { kind: 'bearer', token: value };
  }
  if (scheme === 'basic') return { kind: 'basic', credentials: decodeBasic(value) };
  throw malformed();
}

function decodeBasic(value: string): BasicCredentials {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value)) throw malformed();
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) throw malformed();
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function malformed(): RegistryError {
  return new RegistryError('UNAUTHORIZED', 'malformed Authorization header');
}
