// The /v2/ gate: parses the route, authenticates the caller, checks the access the route needs.

import type { NextFunction, Request, Response } from 'express';
import { covers, formatScope, type Access, type Authorizer, type Identity } from './access.js';
import type { Authenticator } from './authenticator.js';
import type { AuthMode } from './config.js';
import { readAuthorization } from './credentials.js';
import { RegistryError } from './errors.js';
import { basicChallenge, logIn } from './login.js';
import { TokenError, type TokenAuthority } from './token.js';
import { parseV2Route, requirementOf, type Requirement, type V2Route } from './v2-route.js';

export interface GateOptions {
  mode: AuthMode;
  service: string;
  tokens: TokenAuthority;
  authenticator: Authenticator;
  authorizer: Authorizer;
  /** The public origin for this request (https://host[:port]), for realms. */
  publicOrigin(req: Request): string;
}

/** What the gate leaves for the proxy and the access log. */
export interface GateLocals {
  route: V2Route;
  user: string;
}

export function isV2Request(target: string): boolean {
  return target === '/v2' || target.startsWith('/v2/') || target.startsWith('/v2?');
}

/**
 * Form bodies are refused on /v2/: the registry reads `from`, `mount` and `digest` with Go's
 * FormValue, which lets a form body override the query the gateway authorized.
 */
function refuseFormBodies(req: Request): void {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  if (type.startsWith('application/x-www-form-urlencoded') || type.startsWith('multipart/form-data')) {
    throw new RegistryError('UNSUPPORTED', 'form bodies are not part of the registry API', undefined, 400);
  }
}

export function createV2Gate(options: GateOptions) {
  const bearerChallenge = (req: Request, scopes: Access[], error?: 'invalid_token' | 'insufficient_scope') => {
    let challenge = `Bearer realm="${options.publicOrigin(req)}/token",service="${options.service}"`;
    if (scopes.length > 0) challenge += `,scope="${scopes.map(formatScope).join(' ')}"`;
    if (error) challenge += `,error="${error}"`;
    return challenge;
  };

  const viaToken = (req: Request, requirement: Requirement): Identity => {
    const needed = requirement.kind === 'access' ? requirement.access : [];
    const presented = readAuthorization(req.headers.authorization);
    if (presented.kind !== 'bearer') {
      throw new RegistryError('UNAUTHORIZED', 'authentication required', needed.length ? needed : undefined).withHeader('WWW-Authenticate', bearerChallenge(req, needed));
    }
    let verified;
    try {
      verified = options.tokens.verify(presented.token);
    } catch (error) {
      if (!(error instanceof TokenError)) throw error;
      const message = error.reason === 'expired' ? 'token expired' : 'invalid token';
      throw new RegistryError('UNAUTHORIZED', message).withHeader('WWW-Authenticate', bearerChallenge(req, needed, 'invalid_token'));
    }
    if (!covers(verified.access, needed)) {
      throw new RegistryError('UNAUTHORIZED', 'insufficient scope', needed).withHeader('WWW-Authenticate', bearerChallenge(req, needed, 'insufficient_scope'));
    }
    return { user: verified.subject === '' ? null : verified.subject };
  };

  const viaBasic = async (req: Request, requirement: Requirement): Promise<Identity> => {
    const presented = readAuthorization(req.headers.authorization);
    const realm = options.publicOrigin(req);
    let identity: Identity;
    if (presented.kind === 'basic') {
      identity = await logIn(options.authenticator, presented.credentials, realm);
    } else if (presented.kind === 'none' && options.authorizer.allowsAnonymous()) {
      identity = { user: null };
    } else {
      throw new RegistryError('UNAUTHORIZED', 'authentication required').withHeader('WWW-Authenticate', basicChallenge(realm));
    }
    if (requirement.kind === 'access') {
      const granted = options.authorizer.grant(identity, requirement.access);
      if (!covers(granted, requirement.access)) {
        if (identity.user === null) {
          throw new RegistryError('UNAUTHORIZED', 'authentication required').withHeader('WWW-Authenticate', basicChallenge(realm));
        }
        throw new RegistryError('DENIED', 'requested access to the resource is denied', requirement.access);
      }
    } else if (identity.user === null) {
      // The /v2/ ping of an anonymous caller still gets the challenge, so `docker login` can start.
      throw new RegistryError('UNAUTHORIZED', 'authentication required').withHeader('WWW-Authenticate', basicChallenge(realm));
    }
    return identity;
  };

  return async function v2Gate(req: Request, res: Response, next: NextFunction): Promise<void> {
    if (!isV2Request(req.url)) return next();
    const route = parseV2Route(req.url);
    const requirement = requirementOf(req.method, route);
    refuseFormBodies(req);
    const identity = options.mode === 'token' ? viaToken(req, requirement) : await viaBasic(req, requirement);
    const locals: GateLocals = { route, user: identity.user ?? '' };
    Object.assign(res.locals, locals);
    next();
  };
}
