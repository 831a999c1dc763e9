// The access tokens page: htpasswd users' CI tokens and OIDC users' personal access tokens, made with scope and expiry, listed and revoked by their owner only.

import express, { type Request, type Response } from 'express';
import { isRepositoryName } from '../../access/reference.js';
import { parseScopePattern } from '../../access/access.js';
import { createCiToken, listCiTokens, parseCiTokenScopes, revokeCiToken, type CiTokenRecord, type CreatedCiToken } from '../../auth/ci-tokens.js';
import { CliError } from '../../errors.js';
import { messagePage } from '../pages/layout.js';
import { tokensPage, type TokenFormValues, type TokensPageData } from '../pages/tokens.js';
import type { Session } from '../session.js';
import { webOf } from '../web-context.js';
import { frameOf, handle, hostOf, refuseForm, sendPage, type WebKit } from './kit.js';

export interface TokenRoutesOptions {
  tokensFile: string;
  /** The live CI-token store, read again after a change so that it counts at once. */
  tokens: { reload(): Promise<boolean> };
  /** The OIDC provider's token lifetime: its users' tokens never live longer. */
  oidcTokenTtlSeconds?: number;
}

/** Live tokens one user may hold; more means making them in a loop, not using them. */
export const maxTokensPerUser = 50;
const tokenIdPattern = /^[a-z2-7]{12}$/;
const allActions = ['pull', 'push', 'delete'];
const day = 86_400;
const choices = [
  { value: '1d', label: '1 day', seconds: day },
  { value: '7d', label: '7 days', seconds: 7 * day },
  { value: '30d', label: '30 days', seconds: 30 * day },
  { value: '90d', label: '90 days', seconds: 90 * day },
  { value: '365d', label: '1 year', seconds: 365 * day },
];

type Holder = { kind: 'ci'; user: string } | { kind: 'oidc'; user: string; provider: string; subject: string; groups: string[] } | { kind: 'none'; reason: string };

/** Which tokens a session may have: an htpasswd user's CI tokens, an OIDC user's personal access tokens, or none (and why). */
export function holderOf(session: Session): Holder {
  const { data } = session;
  if (data.kind === 'oidc' && data.subject !== undefined) return { kind: 'oidc', user: data.user, provider: data.authenticator, subject: data.subject, groups: data.groups };
  if (data.authenticator === 'htpasswd') return { kind: 'ci', user: data.user };
  if (data.authenticator === 'ci-tokens') return { kind: 'none', reason: 'You signed in with an access token. Sign in with your password to see and make access tokens.' };
  return { kind: 'none', reason: 'Access tokens are not available for directory accounts: docker login and CI jobs use your directory password (or your CI system\'s ID token) directly.' };
}

function owns(holder: Holder): (record: CiTokenRecord) => boolean {
  if (holder.kind === 'ci') return (record) => record.source === undefined && record.user === holder.user;
  if (holder.kind === 'oidc') return (record) => record.source === 'oidc' && record.provider === holder.provider && record.subject === holder.subject;
  return () => false;
}

export function createTokenRoutes(kit: WebKit, options: TokenRoutesOptions) {
  const router = express.Router();
  const form = express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 16 });

  const expiryChoices = (holder: Holder) => {
    const cap = holder.kind === 'oidc' ? options.oidcTokenTtlSeconds ?? 30 * day : Infinity;
    const fit = choices.filter((choice) => choice.seconds <= cap);
    return fit.length > 0 ? fit : [{ value: `${cap}s`, label: `${Math.round(cap / 3600)} hours`, seconds: cap }];
  };

  /** The tokens page of this session (with a just-made token, a refused form). */
  const render = async (req: Request, res: Response, session: Session, status: number, extra: { created?: CreatedCiToken; problem?: string; values?: TokenFormValues } = {}) => {
    const holder = holderOf(session);
    const frame = frameOf(kit, req, res, 'tokens');
    const allowed = expiryChoices(holder);
    const data: TokensPageData = {
      user: session.data.user,
      ...(holder.kind === 'none' ? { unavailable: holder.reason } : {}),
      scopesOptional: holder.kind === 'oidc',
      expiryChoices: allowed.map(({ value, label }) => ({ value, label })),
      host: hostOf(kit, req),
      csrf: kit.guard.csrfFor(req, res, session),
      tokens: holder.kind === 'none' ? [] : (await listCiTokens(options.tokensFile)).filter(owns(holder)),
      now: kit.now(),
      ...(extra.created === undefined ? {} : { created: { credential: extra.created.credential, record: extra.created.record } }),
      ...(extra.problem === undefined ? {} : { problem: extra.problem }),
      values: extra.values ?? { repositories: '', actions: ['pull'], expires: allowed.some((choice) => choice.value === '30d') ? '30d' : allowed.at(-1)!.value, description: '' },
    };
    sendPage(res, status, tokensPage(frame, data));
  };

  const signInFirst = (res: Response) => res.redirect(303, kit.browse ? '/sign-in?next=%2Ftokens' : '/login');

  router.get('/tokens', handle(kit, async (req, res) => {
    const { session } = webOf(res);
    if (session === undefined) return signInFirst(res);
    await render(req, res, session, 200);
  }));
  router.get('/login/tokens', (_req, res) => res.redirect(303, '/tokens'));

  router.post('/tokens', form, handle(kit, async (req, res) => {
    const { session } = webOf(res);
    if (session === undefined) return signInFirst(res);
    const problem = kit.guard.formProblem(req, session);
    if (problem !== undefined) return refuseForm(kit, req, res, problem);
    const holder = holderOf(session);
    if (holder.kind === 'none') return render(req, res, session, 403);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const text = (name: string) => (typeof body[name] === 'string' ? (body[name] as string) : '');
    const actions = [body.actions].flat().filter((action): action is string => typeof action === 'string' && allActions.includes(action));
    const values: TokenFormValues = { repositories: text('repositories').slice(0, 2000), actions, expires: text('expires'), description: text('description').slice(0, 200) };
    const refuse = (message: string, status = 400) => render(req, res, session, status, { problem: message, values });
    const names = values.repositories.split(/[\s,]+/).filter((name) => name.length > 0);
    if (names.length === 0 && holder.kind === 'ci') return refuse('Name at least one repository or pattern.');
    if (names.length > 50) return refuse('Name at most 50 repositories or patterns.');
    const bad = names.find((name) => !isRepositoryName(name) && parseScopePattern(`repository:${name}:pull`) === undefined);
    if (bad !== undefined) return refuse(`"${bad}" is not a repository name or pattern (lowercase a-z 0-9 . _ - with / between parts; * and ** as in the access rules).`);
    if (names.length > 0 && actions.length === 0) return refuse('Choose at least one action.');
    const expiry = expiryChoices(holder).find((choice) => choice.value === values.expires);
    if (expiry === undefined) return refuse('Choose when the token expires.');
    const owned = (await listCiTokens(options.tokensFile)).filter(owns(holder));
    const live = owned.filter((record) => record.expiresAt === null || Date.parse(record.expiresAt) > kit.now());
    if (live.length >= maxTokensPerUser) return refuse(`You have ${live.length} tokens that have not expired. Revoke some first.`, 409);
    let created: CreatedCiToken;
    try {
      created = await createCiToken(options.tokensFile, {
        user: holder.user,
        scopes: names.length === 0 ? [] : parseCiTokenScopes(names.map((name) => `repository:${name}:${actions.join(',')}`)),
        ttlSeconds: expiry.seconds,
        ...(values.description.trim() === '' ? {} : { description: values.description }),
        ...(holder.kind === 'oidc' ? { origin: { source: 'oidc' as const, provider: holder.provider, subject: holder.subject, groups: holder.groups } } : {}),
        now: new Date(kit.now()),
      });
    } catch (error) {
      if (error instanceof CliError) return refuse(error.message);
      throw error;
    }
    await options.tokens.reload();
    kit.logger.info({ user: holder.user, token: created.id, scopes: created.record.scopes.length, expires: created.record.expiresAt }, 'access token created on the web page');
    await render(req, res, session, 200, { created });
  }));

  const revoke = (idOf: (req: Request) => unknown) => handle(kit, async (req, res) => {
    const { session } = webOf(res);
    if (session === undefined) {
      return sendPage(res, 401, messagePage(frameOf(kit, req, res), 'Not signed in', 'Your session ended. Sign in again.', { link: { href: kit.browse ? '/sign-in' : '/login', text: 'Sign in' } }));
    }
    const problem = kit.guard.formProblem(req, session);
    if (problem !== undefined) return refuseForm(kit, req, res, problem);
    const tokenId = idOf(req);
    const holder = holderOf(session);
    if (typeof tokenId !== 'string' || !tokenIdPattern.test(tokenId) || holder.kind === 'none' || !(await revokeCiToken(options.tokensFile, tokenId, owns(holder)))) {
      return sendPage(res, 404, messagePage(frameOf(kit, req, res, 'tokens'), 'No such token', 'You have no token with that id.', { alert: true, link: { href: '/tokens', text: 'Access tokens' } }));
    }
    await options.tokens.reload();
    kit.logger.info({ user: session.data.user, token: tokenId }, 'access token revoked on the web page');
    res.redirect(303, '/tokens');
  });
  router.post('/tokens/:id/revoke', form, revoke((req) => req.params.id));
  router.post('/login/tokens/revoke', form, revoke((req) => (req.body as Record<string, unknown> | undefined)?.id));

  return { router, render };
}
