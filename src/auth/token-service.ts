// The token endpoint: GET per the Docker token spec and POST per its OAuth2 variant.

import express, { type Request, type Response } from 'express';
import { formatScope, grantFor, parseScopes, type Access, type Authorizer, type Identity } from '../access/access.js';
import { describeDenials } from '../access/denial-log.js';
import { RegistryError } from '../errors.js';
import { anonymousName, identifyBasicCaller, identityOfRefreshToken, logIn, mayRefresh, type LoginLog, type LoginServices } from './login.js';
import { TokenError, type TokenAuthority } from './token.js';
import { queryOf } from '../access/v2-route.js';

export interface TokenServiceOptions {
  tokens: TokenAuthority;
  logins: LoginServices;
  authorizer: Authorizer;
  publicOrigin(req: Request): string;
}

interface TokenGrant {
  identity: Identity;
  requested: Access[];
  granted: Access[];
  refreshToken: string | undefined;
}

function badRequest(message: string): RegistryError {
  return new RegistryError('UNSUPPORTED', message, undefined, 400);
}

export function createTokenRouter(options: TokenServiceOptions): express.Router {
  const router = express.Router();

  /**
   * Only password logins (htpasswd, a directory) get refresh tokens, carrying the login's credential:
   * a CI token is itself the long-lived credential, a CI ID token is short-lived on purpose.
   */
  const refreshTokenFor = (identity: Identity): string | undefined => {
    if (identity.user === null || identity.credential === undefined || !mayRefresh(options.logins, identity)) return undefined;
    return options.tokens.issueRefreshToken(identity.user, identity.credential);
  };

  /**
   * A refresh token is good while its authenticator still vouches for the credential (htpasswd: the
   * user exists with the same password; a directory: the user is still found, groups read afresh). It is never rotated.
   */
  const identityFromRefreshToken = async (refreshToken: string, log: LoginLog): Promise<Identity> => {
    let claims;
    try {
      claims = options.tokens.verifyRefreshToken(refreshToken);
    } catch (error) {
      if (!(error instanceof TokenError)) throw error;
      log.reason = error.reason === 'expired' ? 'refresh token expired' : 'invalid refresh token';
      throw new RegistryError('UNAUTHORIZED', 'invalid refresh token');
    }
    log.user = claims.subject;
    let identity: Identity | undefined;
    try {
      identity = await identityOfRefreshToken(options.logins, claims.subject, claims.credentialFingerprint);
    } catch (error) {
      if (error instanceof RegistryError && error.code === 'UNAVAILABLE') log.reason = error.message;
      throw error;
    }
    if (!identity) {
      log.reason = 'credential revoked';
      throw new RegistryError('UNAUTHORIZED', 'refresh token no longer valid: log in again');
    }
    if (identity.authenticator !== undefined) log.authenticator = identity.authenticator;
    return identity;
  };

  const respond = (res: Response, grant: TokenGrant, shape: 'get' | 'post') => {
    const issued = options.tokens.issue(grant.identity.user ?? '', grant.granted, grant.identity.credential);
    res.locals.user = grant.identity.user ?? anonymousName;
    res.locals.granted = grant.granted.map(formatScope);
    // A partial grant is a normal answer, but the operator still learns what was left out and why.
    const denied = describeDenials(options.authorizer, grant.identity, grant.requested, grant.granted, 'rules');
    if (denied.length > 0) res.locals.denied = denied;
    res.set('Cache-Control', 'no-store');
    const body: Record<string, unknown> =
      shape === 'get'
        ? { token: issued.token, access_token: issued.token, expires_in: issued.expiresIn, issued_at: issued.issuedAt }
        : { access_token: issued.token, token_type: 'Bearer', scope: grant.granted.map(formatScope).join(' '), expires_in: issued.expiresIn, issued_at: issued.issuedAt };
    if (grant.refreshToken !== undefined) body.refresh_token = grant.refreshToken;
    res.status(200).json(body);
  };

  router.get('/', async (req, res) => {
    const query = queryOf(req.originalUrl);
    const request = { authorization: req.headers.authorization, address: req.socket.remoteAddress, log: res.locals as LoginLog, gone: () => req.socket.destroyed };
    const identity = await identifyBasicCaller(options.logins, options.authorizer, request, options.publicOrigin(req));
    const requested = parseScopes(query.getAll('scope'));
    const granted = grantFor(options.authorizer, identity, requested);
    const offline = query.get('offline_token') === 'true';
    respond(res, { identity, requested, granted, refreshToken: offline ? refreshTokenFor(identity) : undefined }, 'get');
  });

  // The credentials are in the form: until they are read, the log names no user (not even anonymous).
  const credentialsInBody = (_req: Request, res: Response, next: express.NextFunction) => {
    res.locals.user = null;
    next();
  };

  router.post('/', credentialsInBody, express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 20 }), async (req, res) => {
    const log = res.locals as LoginLog;
    const form = (req.body ?? {}) as Record<string, unknown>;
    const field = (name: string): string | undefined => {
      const value = form[name];
      if (value === undefined) return undefined;
      if (typeof value !== 'string') throw badRequest(`${name} must be given once`);
      return value;
    };
    const grantType = field('grant_type');
    if (!field('client_id')) throw badRequest('client_id is required');
    const offline = field('access_type') === 'offline';
    let identity: Identity;
    let refreshToken: string | undefined;
    if (grantType === 'password') {
      const user = field('username');
      const password = field('password');
      if (!user || password === undefined) throw badRequest('username and password are required');
      identity = await logIn(options.logins, { user, password }, req.socket.remoteAddress, options.publicOrigin(req), log, () => req.socket.destroyed);
      refreshToken = offline ? refreshTokenFor(identity) : undefined;
    } else if (grantType === 'refresh_token') {
      const presentedRefreshToken = field('refresh_token');
      if (!presentedRefreshToken) throw badRequest('refresh_token is required');
      identity = await identityFromRefreshToken(presentedRefreshToken, log);
      // Handed back unchanged: a rotated refresh token breaks clients that keep the first one.
      refreshToken = offline ? presentedRefreshToken : undefined;
    } else {
      throw badRequest('grant_type must be password or refresh_token');
    }
    // containers/image (skopeo, podman, buildah) sends one scope field per scope; others one space-separated field.
    const scopeField = form.scope;
    const scopes = scopeField === undefined ? [] : Array.isArray(scopeField) ? scopeField : [scopeField];
    if (scopes.length > 64 || !scopes.every((scope): scope is string => typeof scope === 'string')) throw badRequest('scope must be text, at most 64 fields');
    const requested = parseScopes(scopes);
    const granted = grantFor(options.authorizer, identity, requested);
    respond(res, { identity, requested, granted, refreshToken }, 'post');
  });

  router.all('/', (req) => {
    throw new RegistryError('UNSUPPORTED', `method ${req.method.slice(0, 20)} is not supported on /token`);
  });

  return router;
}
