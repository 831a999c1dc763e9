// The data folder lock: one holder at a time, a clear refusal, and a crashed holder's lock that expires.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { dataDirInUse, dataLockPath, lockDataDir } from '../src/config/data-lock.js';
import { ConfigError } from '../src/errors.js';

const noLoss = (error: Error) => assert.fail(`the lock was lost: ${error.message}`);

test('a second lock on the same folder is refused, naming it, until the first is released', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'data-lock-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const dataDir = path.join(root, 'data', 'nested');
  const first = await lockDataDir(dataDir, noLoss);
  assert.equal(await dataDirInUse(dataDir), true);
  await assert.rejects(lockDataDir(dataDir, noLoss), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /^GATEWAY_DATA_DIR \(data_dir\): another gateway is running/);
    assert.ok(error.message.includes(dataDir), error.message);
    return true;
  });
  await first.release();
  await first.release();
  assert.equal(await dataDirInUse(dataDir), false);
  const again = await lockDataDir(dataDir, noLoss);
  await again.release();
});

test('the lock of a gateway that died without releasing it expires', async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'data-lock-stale-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  // What a killed gateway leaves behind: the lock folder, no longer refreshed.
  await mkdir(dataLockPath(dataDir));
  const longAgo = new Date(Date.now() - 60_000);
  await utimes(dataLockPath(dataDir), longAgo, longAgo);
  assert.equal(await dataDirInUse(dataDir), false);
  const taken = await lockDataDir(dataDir, noLoss);
  assert.equal(await dataDirInUse(dataDir), true);
  await taken.release();
});
