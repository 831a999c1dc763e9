// Unit tests: a web UI delete counts as a write in flight of the gateway's maintenance mode, and is refused once maintenance is on.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { MaintenanceMode } from '../src/ops/maintenance.js';
import { maintenanceGate } from '../src/ui/browse/deletes.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ui-deletes-unit-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('maintenanceGate', () => {
  test('counts an admitted delete until it is done, and admits none in maintenance', async () => {
    const mode = new MaintenanceMode({ file: path.join(dir, 'maintenance.json'), logger: pino({ level: 'silent' }), heartbeatMs: 60_000 });
    await mode.start();
    try {
      const gate = maintenanceGate(mode);
      const done = gate.admit?.();
      assert.ok(done);
      assert.equal(mode.status().writesInFlight, 1);
      done();
      done();
      assert.equal(mode.status().writesInFlight, 0, 'counted once, released once');
      mode.offer({ on: true, since: new Date(Date.now() + 1000).toISOString(), reason: 'gc' });
      assert.equal(gate.status().on, true);
      assert.equal(gate.admit?.(), undefined);
      assert.equal(mode.status().writesInFlight, 0);
    } finally {
      await mode.stop();
    }
  });
});
