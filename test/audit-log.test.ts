// Audit lines and the audit file: which events are audited, how callers are named, fixed fields first; appended 0600, reopened after rotation, failures counted and told once.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { auditDestination, auditLine, AuditLog } from '../src/ops/audit-log.js';
import { syslogTarget, loggerArguments } from '../src/ops/audit-syslog.js';
import { openCommandAudit } from '../src/ops/audit-command.js';
import { loadConfig } from '../src/config/config.js';
import type { GatewayEvent } from '../src/ops/events.js';

const time = new Date('2026-11-28T12:00:00Z');

function capturedLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n').filter((text) => text.length > 0)) lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

const failedLogin = (user: string): GatewayEvent => ({ type: 'login.failed', user, remote: '192.0.2.7', authenticator: 'htpasswd', reason: 'wrong password' });

describe('audit lines', () => {
  it('leave ordinary requests, token issues and any event not known as a security event to other logs', () => {
    assert.equal(auditLine({ type: 'request', user: 'alice', remote: '192.0.2.1', method: 'GET', route: 'blob', status: 200, bytesIn: 0, bytesOut: 1, durationMs: 1, completed: true }, time), undefined);
    assert.equal(auditLine({ type: 'token.issued', user: 'alice', remote: '192.0.2.1', scopes: ['repository:a:pull'] }, time), undefined);
    assert.equal(auditLine({ type: 'upstream.down', upstream: 'http://r:5000' } as unknown as GatewayEvent, time), undefined);
  });

  it('start with time, event, user and source; a caller whose credentials were never read is unknown, never empty', () => {
    const pushed = auditLine({ type: 'manifest.pushed', user: 'alice', remote: '192.0.2.1', repository: 'app/web', tag: 'v1', digest: 'sha256:ab' }, time)!;
    assert.equal(pushed, '{"time":"2026-11-28T12:00:00.000Z","event":"manifest.pushed","user":"alice","source":"192.0.2.1","repository":"app/web","tag":"v1","digest":"sha256:ab"}');
    const failed = JSON.parse(auditLine({ type: 'login.failed', user: undefined, remote: undefined, reason: 'malformed credentials' }, time)!) as Record<string, unknown>;
    assert.equal(failed.user, 'unknown');
    assert.equal(failed.source, 'unknown');
    const empty = JSON.parse(auditLine({ type: 'access.denied', user: '', remote: '192.0.2.1', denied: [], method: 'GET', route: 'catalog' }, time)!) as Record<string, unknown>;
    assert.equal(empty.user, 'unknown');
  });

  it('name who switched maintenance, and mark reloads and switches as read from a local file', () => {
    const reload = JSON.parse(auditLine({ type: 'config.rejected', file: '/etc/gw/access.yml', error: 'line 3: bad' }, time)!) as Record<string, unknown>;
    assert.deepEqual(reload, { time: '2026-11-28T12:00:00.000Z', event: 'config.rejected', user: 'unknown', source: 'local file', file: '/etc/gw/access.yml', error: 'line 3: bad' });
    const maintenance = JSON.parse(auditLine({ type: 'maintenance', on: true, by: 'root@host (uid 0)' }, time)!) as Record<string, unknown>;
    assert.deepEqual(maintenance, { time: '2026-11-28T12:00:00.000Z', event: 'maintenance', user: 'root@host (uid 0)', source: 'local file', on: true });
  });
});

describe('audit targets', () => {
  it('syslog forms: /dev/log, another socket, or UDP to a host (514 unless given); anything else is no syslog', () => {
    assert.deepEqual(syslogTarget('syslog'), { socket: '/dev/log' });
    assert.deepEqual(syslogTarget('syslog:/run/systemd/journal/dev-log'), { socket: '/run/systemd/journal/dev-log' });
    assert.deepEqual(syslogTarget('syslog://logs.example.net'), { host: 'logs.example.net', port: 514 });
    assert.deepEqual(syslogTarget('syslog://[::1]:5514'), { host: '::1', port: 5514 });
    assert.equal(syslogTarget('/var/log/audit.log'), undefined);
    assert.equal(syslogTarget('syslog.log'), undefined);
    assert.throws(() => syslogTarget('syslog:relative.sock'), /ABSOLUTE/);
    assert.throws(() => syslogTarget('syslog://host:99999'), /HOST\[:PORT\]/);
    assert.deepEqual(auditDestination('stdout'), undefined);
    assert.deepEqual(auditDestination('syslog'), { syslog: { socket: '/dev/log' } });
    assert.deepEqual(auditDestination('audit.log'), { file: 'audit.log' });
  });

  it('logger is asked for RFC 5424 messages as authpriv.info from registry-gateway with the gateway pid, msgid audit', () => {
    const args = loggerArguments({ socket: '/dev/log' }, 4242);
    for (const expected of ['--socket-errors=on', '--rfc5424=notq', 'authpriv.info', 'registry-gateway', '--id=4242', 'audit', '/dev/log']) assert.ok(args.includes(expected), `${expected} in ${args.join(' ')}`);
    assert.deepEqual(loggerArguments({ host: '192.0.2.5', port: 5514 }, 1).slice(0, 5), ['--server', '192.0.2.5', '--port', '5514', '--udp']);
  });

  it('settings: syslog forms kept as they are, a file taken from the folder it was given in, a malformed syslog target refused naming the setting', () => {
    const cwd = '/srv/gateway';
    assert.equal(loadConfig({ env: { GATEWAY_AUDIT_LOG: 'syslog' }, cwd }).config.auditLog, 'syslog');
    assert.equal(loadConfig({ env: { GATEWAY_AUDIT_LOG: 'syslog://127.0.0.1:5514' }, cwd }).config.auditLog, 'syslog://127.0.0.1:5514');
    assert.equal(loadConfig({ env: { GATEWAY_AUDIT_LOG: 'logs/audit.log' }, cwd }).config.auditLog, '/srv/gateway/logs/audit.log');
    assert.throws(() => loadConfig({ env: { GATEWAY_AUDIT_LOG: 'syslog:log.sock' }, cwd }), /GATEWAY_AUDIT_LOG \(audit_log\).*syslog:\/PATH/);
  });
});

describe('the audit file', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'audit-unit-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is created 0600 and appended to, one line per event; after a rename and reopen, lines go to a new file', async () => {
    const file = path.join(dir, 'audit.log');
    await writeFile(file, 'an earlier line\n', { mode: 0o600 });
    const { logger } = capturedLogger();
    const audit = new AuditLog({ target: file, logger, now: () => time });
    audit.write(failedLogin('alice'));
    audit.write({ type: 'request', user: 'alice', remote: '192.0.2.1', method: 'GET', route: 'blob', status: 200, bytesIn: 0, bytesOut: 1, durationMs: 1, completed: true });
    const lines = (await readFile(file, 'utf8')).split('\n');
    assert.equal(lines[0], 'an earlier line');
    assert.equal(JSON.parse(lines[1]!).user, 'alice');
    assert.equal(lines.length, 3, 'the request is no audit matter');

    await rename(file, `${file}.1`);
    audit.write(failedLogin('bob'));
    audit.reopen();
    audit.write(failedLogin('carol'));
    await audit.close();
    assert.deepEqual((await readFile(`${file}.1`, 'utf8')).trim().split('\n').slice(1).map((line) => JSON.parse(line).user), ['alice', 'bob']);
    assert.deepEqual((await readFile(file, 'utf8')).trim().split('\n').map((line) => JSON.parse(line).user), ['carol']);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
  });

  it('a write that fails is counted, told once per burst, and never thrown at the caller', async () => {
    const { logger, lines } = capturedLogger();
    // /dev/full opens for appending and fails every write with ENOSPC: a full disk.
    const audit = new AuditLog({ target: '/dev/full', logger });
    for (let i = 0; i < 5; i++) audit.write(failedLogin(`user${i}`));
    assert.equal(audit.failures, 5);
    const told = lines.filter((line) => line.level === 50);
    assert.equal(told.length, 1, JSON.stringify(lines));
    assert.match(String(told[0]!.err), /ENOSPC/);
    assert.equal(told[0]!.audit_log, '/dev/full');

    const eager = new AuditLog({ target: '/dev/full', logger, quietMs: 0 });
    eager.write(failedLogin('a'));
    eager.write(failedLogin('b'));
    assert.equal(lines.filter((line) => line.level === 50).length, 3, 'with no quiet time each failure is told');
    await audit.close();
    await eager.close();
  });

  it('the command line checks the file before it acts, and writes its own lines as the operator', async () => {
    const file = path.join(dir, 'cli-audit.log');
    const audit = openCommandAudit('cli-audit.log', dir, () => time);
    assert.ok(audit);
    audit.write({ type: 'ci-token.created', id: 'abc234', owner: 'alice' });
    const line = JSON.parse((await readFile(file, 'utf8')).trim()) as Record<string, unknown>;
    assert.equal(line.event, 'ci-token.created');
    assert.equal(line.source, 'command line');
    assert.match(String(line.user), /\(uid \d+\)$/);
    assert.equal(openCommandAudit('stdout', dir), undefined);
    assert.throws(() => openCommandAudit(path.join(dir, 'missing', 'audit.log'), dir), /ENOENT/);
  });
});
