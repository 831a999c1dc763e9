// Maintenance switch and reports, the drain wait, the collector's output, the storage a registry config names, and retention rules and decisions.

import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Writable } from 'node:stream';
import type { Response } from 'express';
import { pino } from 'pino';
import { parseDocument, LineCounter, isMap, isScalar, type Node } from 'yaml';
import { loadConfig } from '../src/config/config.js';
import { ConfigError } from '../src/errors.js';
import { runCollector } from '../src/ops/gc-collector.js';
import { describeStorage, type GcTarget } from '../src/ops/gc-target.js';
import { liveReports, parseMaintenanceState, readMaintenanceState, reportFile, switchOff, switchOn, writeReport, type GatewayReport } from '../src/ops/maintenance-file.js';
import { MaintenanceMode } from '../src/ops/maintenance.js';
import { DrainTimeout, waitForWritesToDrain } from '../src/ops/maintenance-wait.js';
import { belongsToAnImage, decideTags } from '../src/ops/retention.js';
import { parseRetention, retentionSource, ruleFor } from '../src/ops/retention-rules.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'maintenance-unit-'));
});
after(() => rm(dir, { recursive: true, force: true }));

function report(overrides: Partial<GatewayReport>): GatewayReport {
  return { host: 'other-host', pid: 4242, instance: 'abc', startedAt: new Date().toISOString(), heartbeatAt: new Date().toISOString(), maintenance: { on: false, id: null }, writesInFlight: 0, ...overrides };
}

describe('the maintenance switch file', () => {
  test('a missing file is off; on gets an id; on again keeps it; off by another id leaves it; off ends it', async () => {
    const file = path.join(dir, 'switch', 'maintenance.json');
    assert.deepEqual(await readMaintenanceState(file), { on: false });
    const first = await switchOn(file, 'tester', 'testing');
    assert.equal(first.changed, true);
    assert.match(first.state.id ?? '', /^[A-Za-z0-9_-]+$/);
    const again = await switchOn(file, 'someone else', 'other');
    assert.equal(again.changed, false);
    assert.equal(again.state.id, first.state.id);
    assert.equal((await switchOff(file, 'tester', 'not-this-one')).changed, false);
    assert.equal((await readMaintenanceState(file)).on, true);
    assert.equal((await switchOff(file, 'tester', first.state.id)).changed, true);
    assert.equal((await readMaintenanceState(file)).on, false);
  });

  test('broken content is refused with the reason, never read as off', () => {
    assert.throws(() => parseMaintenanceState('{"on": true'), /not JSON/);
    assert.throws(() => parseMaintenanceState('{"on": "yes", "id": "a"}'), /"on" must be true or false/);
    assert.throws(() => parseMaintenanceState('{"on": true}'), /needs an "id"/);
    assert.throws(() => parseMaintenanceState('{"on": false, "extra": 1}'), /extra/);
    assert.deepEqual(parseMaintenanceState('{"on": true, "id": "x1"}'), { on: true, id: 'x1' });
  });
});

describe('gateway reports', () => {
  test('stale reports and reports of dead processes on this host do not count; malformed ones are named', async () => {
    const file = path.join(dir, 'reports', 'maintenance.json');
    await writeReport(file, report({ host: 'far-away', pid: 1 }));
    await writeReport(file, report({ host: 'stale-host', pid: 2 }));
    const old = new Date(Date.now() - 60_000);
    await utimes(reportFile(file, 'stale-host', 2), old, old);
    // A pid of this host that no process has: the highest pid Linux hands out, plus one.
    await writeReport(file, report({ host: os.hostname(), pid: 4_194_305 }));
    await writeFile(path.join(`${file}.d`, 'junk.json'), '{"not": "a report"}');
    const { live, problems } = await liveReports(file);
    assert.deepEqual(live.map((entry) => entry.report.host), ['far-away']);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /junk\.json: not a gateway report/);
    await assert.rejects(readFile(reportFile(file, os.hostname(), 4_194_305)), /ENOENT/, 'the dead process\'s report is removed');
  });

  test('the drain wait ends when every live gateway reports the period and no write; else it names who is busy', async () => {
    const file = path.join(dir, 'drain', 'maintenance.json');
    await writeReport(file, report({ host: 'a', pid: 1, maintenance: { on: true, id: 'p1' }, writesInFlight: 2 }));
    await writeReport(file, report({ host: 'b', pid: 2 }));
    const lines: string[] = [];
    await assert.rejects(waitForWritesToDrain({ maintenanceFile: file, id: 'p1', timeoutMs: 0, progress: (line) => lines.push(line) }), (error: unknown) => {
      assert.ok(error instanceof DrainTimeout);
      assert.match(error.message, /a pid 1 has 2 writes in flight; b pid 2 has not seen the switch yet/);
      return true;
    });
    assert.equal(lines.length, 1);
    await writeReport(file, report({ host: 'a', pid: 1, maintenance: { on: true, id: 'p1' } }));
    await writeReport(file, report({ host: 'b', pid: 2, maintenance: { on: true, id: 'p1' } }));
    const drained = await waitForWritesToDrain({ maintenanceFile: file, id: 'p1', timeoutMs: 0 });
    assert.equal(drained.gateways.length, 2);
  });
});

/** A response stand-in that closes on demand, as express's does when the answer has gone out. */
function fakeResponse(): { res: Response; close(): void } {
  const listeners: (() => void)[] = [];
  let max = 10;
  const res = {
    once: (event: string, listener: () => void) => (event === 'close' ? listeners.push(listener) : 0),
    getMaxListeners: () => max,
    setMaxListeners: (value: number) => (max = value),
  } as unknown as Response;
  return { res, close: () => listeners.forEach((listener) => listener()) };
}

describe('maintenance in a gateway', () => {
  test('writes are counted while off and refused while on; the report says which period and how many are in flight', async () => {
    const file = path.join(dir, 'mode', 'maintenance.json');
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, new Writable({ write: (chunk: Buffer, _encoding, done) => (lines.push(chunk.toString()), done()) }));
    const switches: boolean[] = [];
    const mode = new MaintenanceMode({ file, logger, onSwitch: (state) => switches.push(state.on), heartbeatMs: 60_000 });
    await mode.start();
    try {
      const own = reportFile(file, os.hostname(), process.pid);
      const readOwn = async () => JSON.parse(await readFile(own, 'utf8')) as GatewayReport;
      const first = fakeResponse();
      assert.equal(mode.admitWrite(first.res), true);
      assert.equal(mode.status().writesInFlight, 1);
      const { state } = await switchOn(file, 'tester', 'unit test');
      await mode_reloaded(mode, true);
      assert.equal(mode.admitWrite(fakeResponse().res), false, 'a write after the switch is refused');
      assert.deepEqual((await readOwn()).maintenance, { on: true, id: state.id });
      assert.equal((await readOwn()).writesInFlight, 1);
      first.close();
      await waitUntil(async () => (await readOwn()).writesInFlight === 0);
      assert.equal(mode.status().writesInFlight, 0);
      await switchOff(file, 'tester');
      await mode_reloaded(mode, false);
      assert.deepEqual(switches, [true, false]);
      assert.ok(lines.some((line) => line.includes('read-only maintenance is on')));
    } finally {
      await mode.stop();
    }
    await assert.rejects(readFile(reportFile(file, os.hostname(), process.pid)), /ENOENT/, 'stop() removes the report');
  });

  test('a switch file that goes missing or breaks keeps maintenance on; `off` (which writes the file) ends it', async () => {
    const file = path.join(dir, 'vanishing', 'maintenance.json');
    const mode = new MaintenanceMode({ file, logger: pino({ level: 'silent' }), heartbeatMs: 60_000 });
    await mode.start();
    try {
      await switchOn(file, 'tester', 'unit test');
      await mode_reloaded(mode, true);
      await rm(file);
      assert.equal(await mode.reload(), false, 'a missing file is no new state');
      assert.equal(mode.on, true);
      await writeFile(file, '{"on": fals');
      assert.equal(await mode.reload(), false);
      assert.equal(mode.on, true, 'a broken file is no new state either');
      await switchOff(file, 'tester');
      await mode_reloaded(mode, false);
    } finally {
      await mode.stop();
    }
  });

  test('a broken switch file at start stops the start, naming the setting and the file', async () => {
    const file = path.join(dir, 'broken', 'maintenance.json');
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, 'on please');
    const mode = new MaintenanceMode({ file, logger: pino({ level: 'silent' }) });
    await assert.rejects(mode.start(), (error: unknown) => error instanceof ConfigError && error.message.includes('GATEWAY_MAINTENANCE_FILE') && error.message.includes(file));
    await mode.stop();
  });
});

async function waitUntil(condition: () => Promise<boolean>): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (await condition().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  assert.fail('condition never held');
}

/** The switch file's watcher polls; reload() is what it calls, so the test calls it and waits for the state. */
async function mode_reloaded(mode: MaintenanceMode, on: boolean): Promise<void> {
  await waitUntil(async () => mode.on === on);
}

describe('the registry collector', () => {
  const fakeCollector = async (script: string): Promise<GcTarget> => {
    const binary = path.join(dir, `collector-${Math.random().toString(16).slice(2)}`);
    await writeFile(binary, `#!/bin/sh\n${script}\n`);
    await chmod(binary, 0o755);
    return { kind: 'external', binary, configFile: '/dev/null', driver: 'swift', filesystemRoot: undefined, cache: undefined, dataDir: dir };
  };

  test('its summary, eligible blobs and deletions are read from what it prints', async () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const target = await fakeCollector(
      `echo "app"; echo; echo "3 blobs marked, 1 blobs and 2 manifests eligible for deletion"; echo "blob eligible for deletion: ${digest}"; ` +
        `echo 'time="x" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/aa/${'a'.repeat(64)}"' >&2`,
    );
    const result = await runCollector(target, { dryRun: false, deleteUntagged: true, env: { PATH: process.env.PATH } });
    assert.equal(result.marked, 3);
    assert.deepEqual(result.eligible, [digest]);
    assert.equal(result.manifests, 2);
    assert.equal(result.deleted, 1);
  });

  test('a failure names the command, its exit code and its last words; an empty storage is no failure', async () => {
    const failing = await fakeCollector('echo "failed to garbage collect: failed to mark: s3aws: AccessDenied" >&2; exit 1');
    await assert.rejects(runCollector(failing, { dryRun: true, deleteUntagged: false, env: {} }), /garbage-collect --dry-run \/dev\/null failed with exit code 1; its last output:\n {2}failed to garbage collect: failed to mark: s3aws: AccessDenied/);
    const empty = await fakeCollector('echo "failed to garbage collect: failed to mark: filesystem: Path not found: /docker/registry/v2/repositories" >&2; exit 1');
    assert.deepEqual((await runCollector(empty, { dryRun: false, deleteUntagged: false, env: {} })).eligible, []);
  });

  test('the storage a registry config names: driver, filesystem root, cache; REGISTRY_* variables win', () => {
    const document = { storage: { filesystem: { rootdirectory: '/srv/data' }, delete: { enabled: true }, cache: { blobdescriptor: 'inmemory' } } };
    assert.deepEqual(describeStorage(document, {}), { driver: 'filesystem', filesystemRoot: '/srv/data', cache: 'inmemory' });
    assert.deepEqual(describeStorage(document, { REGISTRY_STORAGE: 'swift' }), { driver: 'swift', filesystemRoot: undefined, cache: undefined });
    assert.deepEqual(describeStorage({ storage: { filesystem: {} } }, { REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR: 'redis' }), { driver: 'filesystem', filesystemRoot: '/var/lib/registry', cache: 'redis' });
  });
});

function rulesFrom(yaml: string) {
  const lineCounter = new LineCounter();
  const document = parseDocument(yaml, { lineCounter });
  const root = document.contents;
  assert.ok(isMap(root));
  const pair = root.items.find((item) => isScalar(item.key) && item.key.value === 'retention')!;
  return parseRetention(retentionSource({ file: 'gateway.yml', lineCounter, value: pair.value as Node | null, data: (document.toJS() as { retention: unknown }).retention }));
}

describe('retention rules', () => {
  test('each mistake names the file, line, entry and key', () => {
    const cases: [string, RegExp][] = [
      ['retention:\n  repositories: x\n', /^gateway\.yml:2:3: retention: must be a list of rules/],
      ['retention:\n  - repositories: ["App"]\n', /^gateway\.yml:2:19: retention\[0\]\.repositories: "App" contains uppercase/],
      ['retention:\n  - repositories: ["a"]\n    keep_newest: -1\n', /^gateway\.yml:3:18: retention\[0\]\.keep_newest: must be a whole number from 0/],
      ['retention:\n  - repositories: ["a"]\n  - repositories: ["b"]\n    keep: 3\n', /^gateway\.yml:3:5: retention\[1\]: unknown key "keep"/],
      ['retention:\n  - repositories: ["{user}/*"]\n', /retention\[0\]\.repositories: "\{user\}\/\*" uses \{user\}/],
      ['retention:\n  - repositories: ["a"]\n    tags: ["v/1"]\n', /^gateway\.yml:3:11: retention\[0\]\.tags: "v\/1" contains/],
    ];
    for (const [yaml, expected] of cases) assert.throws(() => rulesFrom(yaml), (error: unknown) => error instanceof ConfigError && expected.test(error.message), yaml);
  });

  test('the first rule matching both repository and tag governs the tag', () => {
    const rules = rulesFrom('retention:\n  - repositories: ["app/**"]\n    tags: ["latest"]\n  - repositories: ["app/**"]\n    tags: ["v*"]\n    keep_newest: 2\n');
    assert.equal(ruleFor(rules, 'app/web', 'latest')?.index, 0);
    assert.equal(ruleFor(rules, 'app/web', 'v1.0')?.index, 1);
    assert.equal(ruleFor(rules, 'app/web', 'nightly'), undefined);
    assert.equal(ruleFor(rules, 'other', 'v1.0'), undefined);
  });

  test('decisions: newest N kept, then only what is also older than D days goes; undated tags stay', () => {
    const [rule] = rulesFrom('retention:\n  - repositories: ["a"]\n    keep_newest: 1\n    older_than_days: 10\n');
    const now = Date.parse('2026-06-01T00:00:00Z');
    const day = 24 * 3600 * 1000;
    const tags = [
      { tag: 't1', digest: 'sha256:1', created: new Date(now - 1 * day) },
      { tag: 't2', digest: 'sha256:2', created: new Date(now - 40 * day) },
      { tag: 't3', digest: 'sha256:3', created: new Date(now - 50 * day) },
      { tag: 't4', digest: 'sha256:4', created: new Date(now - 3 * day) },
      { tag: 'undated', digest: 'sha256:5', created: undefined },
    ];
    const decided = Object.fromEntries(decideTags(rule!, tags, 'a', now).map((decision) => [decision.tag, decision.delete]));
    assert.deepEqual(decided, { undated: false, t1: false, t4: false, t2: true, t3: true });
  });

  test('tags that belong to another image are never governed: referrers fallback tags, cosign signatures', () => {
    const hex = 'ab'.repeat(32);
    for (const tag of [`sha256-${hex}`, `sha256-${hex}.sig`, `sha256-${hex}.att`, `sha256-${hex}.sbom`]) assert.equal(belongsToAnImage(tag), true, tag);
    for (const tag of ['sha256-abc', 'v1.0', `build-${hex}`, 'latest']) assert.equal(belongsToAnImage(tag), false, tag);
  });

  test('gc_schedule must be a cron expression', () => {
    assert.throws(() => loadConfig({ env: { GATEWAY_GC_SCHEDULE: '61 * * * *' }, cwd: dir }), /GATEWAY_GC_SCHEDULE \(gc_schedule\): "61 \* \* \* \*" is not a cron expression/);
    assert.equal(loadConfig({ env: { GATEWAY_GC_SCHEDULE: '30 3 * * 0' }, cwd: dir }).config.gcSchedule, '30 3 * * 0');
  });
});
