// Reads credentials out of an Authorization header; decides nothing about them.

export interface BasicCredentials {
  user: string;
  password: string;
}

export type PresentedCredentials =
  | { kind: 'none' }
  | { kind: 'basic'; credentials: BasicCredentials }
  | { kind: 'bearer'; token: string }
  /** Unreadable: the caller answers 401 with its challenge, like for no credentials, and keeps nothing of it. */
  | { kind: 'malformed' };

/** Longest Authorization value worth decoding; real tokens are a few KiB. */
const maxAuthorizationLength = 16 * 1024;

const malformed: PresentedCredentials = { kind: 'malformed' };

export function readAuthorization(header: string | undefined): PresentedCredentials {
  if (header === undefined || header === '') return { kind: 'none' };
  if (header.length > maxAuthorizationLength) return malformed;
  const space = header.indexOf(' ');
  const scheme = (space === -1 ? header : header.slice(0, space)).toLowerCase();
  const value = space === -1 ? '' : header.slice(space + 1).trim();
  if (scheme === 'bearer') return /^[A-Za-z0-9._~+/=-]+$/.test(value) ? { kind: 'bearer', token: value } : malformed;
  if (scheme === 'basic') return decodeBasic(value);
  return malformed;
}

function decodeBasic(value: string): PresentedCredentials {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value)) return malformed;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  // containers/image (podman, skopeo, buildah) sends an empty user and password, "Basic Og==",
  // when it has no credentials for a registry that challenged with Basic: that is anonymous.
  if (decoded === ':') return { kind: 'none' };
  const colon = decoded.indexOf(':');
  if (colon <= 0) return malformed;
  return { kind: 'basic', credentials: { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) } };
}
