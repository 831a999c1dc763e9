// Tests for what the tokens page relies on: repository patterns in CI token scopes, who may hold which tokens, sign-outs heard across gateways.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { limitAccess, parseScope, parseScopePattern } from '../src/access/access.js';
import { parseCiTokenScopes } from '../src/auth/ci-tokens.js';
import { InProcessSharedState } from '../src/state/shared-state.js';
import { CookieSigner } from '../src/ui/cookies.js';
import { holderOf } from '../src/ui/routes/tokens.js';
import { SessionCookies, type Session, type SessionData } from '../src/ui/session.js';
import { shareSessionEnds } from '../src/ui/session-sharing.js';

const pull = (name: string) => ({ type: 'repository', name, actions: ['pull', 'push'] });

describe('repository patterns in CI token scopes', () => {
  it('reads a pattern only as a token scope, never as a scope a client asks for', () => {
    assert.deepEqual(parseScopePattern('repository:team/*:push,pull'), { type: 'repository', name: 'team/*', actions: ['pull', 'push'] });
    assert.deepEqual(parseScopePattern('repository:**:pull'), { type: 'repository', name: '**', actions: ['pull'] });
    assert.equal(parseScope('repository:team/*:pull'), undefined);
    for (const bad of ['repository:team:pull', 'repository:Team/*:pull', 'repository:{user}/*:pull', 'repository:team/a**:pull', 'registry:cat*:*', 'repository:team/*:', 'repository:/*:pull']) {
      assert.equal(parseScopePattern(bad), undefined, bad);
    }
    assert.deepEqual(parseCiTokenScopes(['repository:team/*:pull repository:app:push']), [{ type: 'repository', name: 'team/*', actions: ['pull'] }, { type: 'repository', name: 'app', actions: ['push'] }]);
  });

  it('limits a grant to the repositories a pattern covers', () => {
    const granted = [pull('team/app'), pull('team/app/deep'), pull('teams/app'), pull('app')];
    assert.deepEqual(limitAccess(granted, [{ type: 'repository', name: 'team/*', actions: ['pull'] }]), [{ type: 'repository', name: 'team/app', actions: ['pull'] }]);
    assert.deepEqual(limitAccess(granted, [{ type: 'repository', name: 'team/**', actions: ['*'] }]).map((entry) => entry.name), ['team/app', 'team/app/deep']);
    assert.deepEqual(limitAccess(granted, [{ type: 'repository', name: 'app', actions: ['push'] }]), [{ type: 'repository', name: 'app', actions: ['push'] }]);
  });
});

const session = (data: Partial<SessionData>): Session => ({ id: 'x'.repeat(43), createdAt: 0, lastSeenAt: 0, data: { user: 'alice', groups: [], kind: 'password', authenticator: 'htpasswd', ...data } });

describe('who may have access tokens', () => {
  it('htpasswd users make CI tokens, OIDC users personal access tokens; token and directory sign-ins none', () => {
    assert.deepEqual(holderOf(session({})), { kind: 'ci', user: 'alice' });
    assert.deepEqual(holderOf(session({ kind: 'oidc', authenticator: 'sso', subject: 'sub-1', groups: ['dev'] })), { kind: 'oidc', user: 'alice', provider: 'sso', subject: 'sub-1', groups: ['dev'] });
    assert.match((holderOf(session({ authenticator: 'ci-tokens' })) as { reason: string }).reason, /signed in with an access token/);
    assert.match((holderOf(session({ authenticator: 'corp-ldap' })) as { reason: string }).reason, /not available for directory accounts/);
  });
});

describe('sign-outs across gateways', () => {
  it('a session ended at one gateway is refused at another through the shared state', async () => {
    const shared = new InProcessSharedState();
    const signer = new CookieSigner(randomBytes(32));
    const here = new SessionCookies({ signer });
    const there = new SessionCookies({ signer });
    const stops = [shareSessionEnds(shared, here, pino({ level: 'silent' })), shareSessionEnds(shared, there, pino({ level: 'silent' }))];
    const { session: made, cookie } = here.create({ user: 'alice', groups: [], kind: 'password', authenticator: 'htpasswd', credential: 'c' });
    const header = cookie.split(';')[0]!;
    assert.equal(there.read(header)?.session.id, made.id);
    here.end(made);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(there.read(header), undefined);
    for (const stop of stops) stop();
    await shared.close();
  });
});
