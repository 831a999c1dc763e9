// Audit lines: which events are audited, how callers are named, and the fixed fields first.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { auditLine } from '../src/ops/audit-log.js';

const time = new Date('2026-11-28T12:00:00Z');

describe('audit lines', () => {
  it('leave ordinary requests and token issues to the access log', () => {
    assert.equal(auditLine({ type: 'request', user: 'alice', remote: '192.0.2.1', method: 'GET', route: 'blob', status: 200, bytesIn: 0, bytesOut: 1, durationMs: 1, completed: true }, time), undefined);
    assert.equal(auditLine({ type: 'token.issued', user: 'alice', remote: '192.0.2.1', scopes: ['repository:a:pull'] }, time), undefined);
  });

  it('start with time, event, user and source; a caller whose credentials were never read is unknown, never empty', () => {
    const pushed = auditLine({ type: 'manifest.pushed', user: 'alice', remote: '192.0.2.1', repository: 'app/web', tag: 'v1', digest: 'sha256:ab' }, time)!;
    assert.equal(pushed, '{"time":"2026-11-28T12:00:00.000Z","event":"manifest.pushed","user":"alice","source":"192.0.2.1","repository":"app/web","tag":"v1","digest":"sha256:ab"}');
    const failed = JSON.parse(auditLine({ type: 'login.failed', user: undefined, remote: undefined, reason: 'malformed credentials' }, time)!) as Record<string, unknown>;
    assert.equal(failed.user, 'unknown');
    assert.equal(failed.source, 'unknown');
    const reload = JSON.parse(auditLine({ type: 'config.rejected', file: '/etc/gw/access.yml', error: 'line 3: bad' }, time)!) as Record<string, unknown>;
    assert.deepEqual(reload, { time: '2026-11-28T12:00:00.000Z', event: 'config.rejected', file: '/etc/gw/access.yml', error: 'line 3: bad' });
  });
});
