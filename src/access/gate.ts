// The /v2/ gate: parses the route, authenticates the caller, checks the access the route needs.

import type { NextFunction, Request, Response } from 'express';
import { covers, formatScope, grantFor, type Access, type Authorizer, type Identity } from './access.js';
import type { AuthMode } from '../config/config.js';
import { readAuthorization } from '../auth/credentials.js';
import { RegistryError } from '../errors.js';
import { describeDenials } from './denial-log.js';
import { anonymousName, basicChallenge, identifyBasicCaller, identityOfToken, type LoginLog, type LoginServices } from '../auth/login.js';
import { TokenError, type TokenAuthority } from '../auth/token.js';
import { prepareOutgoing, type OutgoingRequest } from '../registry/upstream-request.js';
import { parseV2Route, requirementOf, withoutMount, type V2Route } from './v2-route.js';

export interface GateOptions {
  mode: AuthMode;
  service: string;
  tokens: TokenAuthority;
  logins: LoginServices;
  authorizer: Authorizer;
  /** The public origin for this request (https://host[:port]), for realms. */
  publicOrigin(req: Request): string;
}

/** What the gate leaves in res.locals for what follows (forward.ts) and the access log. */
export interface GateLocals {
  route: V2Route;
  identity: Identity;
  user: string;
  /** GET /v2/_catalog by a caller who may not list everything: answer with what they may pull. */
  filterCatalog: boolean;
  /** What the registry will be sent (headers, body framing), decided before authentication. */
  outgoing: OutgoingRequest;
}

function isV2Request(target: string): boolean {
  return target === '/v2' || target.startsWith('/v2/') || target.startsWith('/v2?');
}

/**
 * A cross-repository mount from a repository the caller may not pull becomes a plain upload:
 * the registry then never reveals whether the blob exists there.
 */
function dropMount(route: Extract<V2Route, { kind: 'upload-start' }>): V2Route {
  return withoutMount(route);
}

/** The access log's notes on this request (user tried, reason), kept in the response's locals. */
function logOf(req: Request): LoginLog {
  return (req.res?.locals ?? {}) as LoginLog;
}

interface Decision {
  identity: Identity;
  /** What the caller holds, to compare with what the route needs. */
  holds: Access[];
}

export function createV2Gate(options: GateOptions) {
  const bearerChallenge = (req: Request, scopes: Access[], error?: 'invalid_token' | 'insufficient_scope') => {
    let challenge = `Bearer realm="${options.publicOrigin(req)}/token",service="${options.service}"`;
    if (scopes.length > 0) challenge += `,scope="${scopes.map(formatScope).join(' ')}"`;
    if (error) challenge += `,error="${error}"`;
    return challenge;
  };

  /** Every Bearer request: synchronous while the credential's authenticator answers from memory (htpasswd, CI tokens, a directory). */
  const viaToken = (req: Request, challengeScopes: Access[]): Decision | Promise<Decision> => {
    const presented = readAuthorization(req.headers.authorization);
    const log = logOf(req);
    if (presented.kind === 'malformed') {
      log.reason = 'malformed credentials';
      throw new RegistryError('UNAUTHORIZED', 'malformed Authorization header').withHeader('WWW-Authenticate', bearerChallenge(req, challengeScopes, 'invalid_token'));
    }
    if (presented.kind !== 'bearer') {
      log.reason = presented.kind === 'none' ? 'no credentials' : 'not a bearer token';
      throw new RegistryError('UNAUTHORIZED', 'authentication required', challengeScopes.length ? challengeScopes : undefined).withHeader('WWW-Authenticate', bearerChallenge(req, challengeScopes));
    }
    let verified;
    try {
      verified = options.tokens.verify(presented.token);
    } catch (error) {
      if (!(error instanceof TokenError)) throw error;
      const message = error.reason === 'expired' ? 'token expired' : 'invalid token';
      log.reason = message;
      throw new RegistryError('UNAUTHORIZED', message).withHeader('WWW-Authenticate', bearerChallenge(req, challengeScopes, 'invalid_token'));
    }
    const decide = (identity: Identity | undefined): Decision => {
      if (!identity) {
        log.user = verified.subject === '' ? anonymousName : verified.subject;
        log.reason = 'credential revoked';
        throw new RegistryError('UNAUTHORIZED', 'the credentials of this token are no longer valid').withHeader('WWW-Authenticate', bearerChallenge(req, challengeScopes, 'invalid_token'));
      }
      return { identity, holds: verified.access };
    };
    const identity = identityOfToken(options.logins, verified.subject, verified.credential);
    return identity instanceof Promise ? identity.then(decide) : decide(identity);
  };

  const viaBasic = async (req: Request, wanted: Access[]): Promise<Decision> => {
    const request = { authorization: req.headers.authorization, address: req.socket.remoteAddress, log: logOf(req), gone: () => req.socket.destroyed };
    const identity = await identifyBasicCaller(options.logins, options.authorizer, request, options.publicOrigin(req));
    return { identity, holds: grantFor(options.authorizer, identity, wanted) };
  };

  const refuse = (req: Request, decision: Decision, needed: Access[]): never => {
    const log = logOf(req) as LoginLog & { denied?: unknown };
    log.user = decision.identity.user ?? anonymousName;
    const denied = describeDenials(options.authorizer, decision.identity, needed, decision.holds, options.mode === 'token' ? 'token' : 'rules');
    if (denied.length > 0) log.denied = denied;
    else log.reason = 'no credentials';
    if (options.mode === 'token') {
      throw new RegistryError('UNAUTHORIZED', 'insufficient scope', needed).withHeader('WWW-Authenticate', bearerChallenge(req, needed, 'insufficient_scope'));
    }
    if (decision.identity.user === null) {
      throw new RegistryError('UNAUTHORIZED', 'authentication required').withHeader('WWW-Authenticate', basicChallenge(options.publicOrigin(req)));
    }
    throw new RegistryError('DENIED', 'requested access to the resource is denied', needed);
  };

  return async function v2Gate(req: Request, res: Response, next: NextFunction): Promise<void> {
    if (!isV2Request(req.url)) return next();
    // Clients detect a v2 registry by this header; proxied answers carry the registry's own, the same.
    res.setHeader('Docker-Distribution-Api-Version', 'registry/2.0');
    let route = parseV2Route(req.url);
    const requirement = requirementOf(req.method, route);
    // Headers, framing and content type the registry will see; refused here, before anyone is asked for a password.
    const outgoing = prepareOutgoing(req, route);
    const wanted = requirement.kind === 'access' ? requirement.access : [];
    const viaMode = options.mode === 'token' ? viaToken(req, wanted) : viaBasic(req, wanted);
    const decision = viaMode instanceof Promise ? await viaMode : viaMode;

    let filterCatalog = false;
    if (requirement.kind === 'identity') {
      // The /v2/ ping of an anonymous Basic-mode caller still gets the challenge, so `docker login` can start.
      if (options.mode === 'basic' && decision.identity.user === null) refuse(req, decision, []);
    } else if (route.kind === 'catalog') {
      filterCatalog = !covers(decision.holds, wanted);
    } else if (route.kind === 'upload-start' && route.mountFrom !== undefined && wanted.length > 1) {
      const target = wanted.slice(0, 1);
      if (!covers(decision.holds, target)) refuse(req, decision, target);
      if (!covers(decision.holds, wanted)) route = dropMount(route);
    } else if (!covers(decision.holds, wanted)) {
      refuse(req, decision, wanted);
    }
    const locals: GateLocals = { route, identity: decision.identity, user: decision.identity.user ?? anonymousName, filterCatalog, outgoing };
    Object.assign(res.locals, locals);
    next();
  };
}
