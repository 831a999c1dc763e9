// `gateway gc`: one collection at a time, writes held on every gateway (maintenance on, writes in flight drained), the registry's collector, maintenance off again.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import type { Config } from '../config/config.js';
import { dataDirInUse, lockDataDir } from '../config/data-lock.js';
import { settingName } from '../config/settings.js';
import { runCollector, type CollectorResult } from './gc-collector.js';
import { GcError, gcTarget, type GcTarget } from './gc-target.js';
import { readMaintenanceState, reportFolder, switchOff, switchOn } from './maintenance-file.js';
import { DrainTimeout, waitForWritesToDrain } from './maintenance-wait.js';

export { GcError } from './gc-target.js';

/** The lock one storage operation (a collection, a retention run) holds from start to end. */
export function storageLockPath(maintenanceFile: string): string {
  return `${maintenanceFile}.gc.lock`;
}

/** Runs `work` holding the storage lock beside the maintenance file; a second caller is refused at once, naming the holder's lock. */
export async function withStorageLock<T>(maintenanceFile: string, what: string, work: () => Promise<T>): Promise<T> {
  const lockPath = storageLockPath(maintenanceFile);
  await mkdir(path.dirname(maintenanceFile), { recursive: true });
  let release: () => Promise<void>;
  try {
    // Keyed by its own name: proper-lockfile keeps one lock per locked path, and the switch file's edits lock that one.
    release = await lockfile.lock(`${maintenanceFile}.gc`, { realpath: false, lockfilePath: lockPath, stale: 10_000, retries: 0, onCompromised: () => undefined });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ELOCKED') {
      throw new GcError(`another \`gateway gc\` or \`gateway retention\` is running (it holds ${lockPath}); ${what} did nothing. A lock left by a process that died expires 10 s after it`);
    }
    throw new GcError(`cannot take the lock ${lockPath} (${code ?? (error as Error).message}); ${what} did nothing`);
  }
  try {
    return await work();
  } finally {
    await release().catch(() => undefined);
  }
}

export interface GcOptions {
  config: Readonly<Config>;
  env: NodeJS.ProcessEnv;
  dryRun: boolean;
  deleteUntagged: boolean;
  /** How long to wait for the gateways' writes in flight. */
  waitMs: number;
  /** Collect although no gateway reports (an external registry nobody writes to through a gateway now). */
  allowNoGateway: boolean;
  /** Who switches maintenance, for the file: operator('gateway gc'). */
  by: string;
  /** Progress for the operator (the CLI prints it, a scheduled run logs it). */
  say(line: string): void;
  /** Every line the collector prints. */
  onCollectorLine?(line: string): void;
  signal?: AbortSignal;
}

export interface GcReport {
  target: GcTarget;
  dryRun: boolean;
  result: CollectorResult;
  /** How writes were held: by a maintenance period of this run, one already on, the data folder lock (no gateway running), or not at all (dry run). */
  held: 'maintenance' | 'maintenance-already-on' | 'data-folder' | 'nothing';
  /** Gateways that held their writes. */
  gateways: number;
  /** Maintenance stays on (the registry caches blob descriptors and must be restarted first, or it was on before). */
  leftOn: boolean;
}

/** Collects garbage as the options say; throws GcError (maintenance switched off again unless it must stay on) when anything fails. */
export async function collectGarbage(options: GcOptions): Promise<GcReport> {
  const { config } = options;
  const target = await gcTarget(config, options.env);
  const collect = () =>
    runCollector(target, { dryRun: options.dryRun, deleteUntagged: options.deleteUntagged, env: options.env, signal: options.signal, onLine: options.onCollectorLine });
  return withStorageLock(config.maintenanceFile, 'gateway gc', async () => {
    if (target.kind === 'embedded' && !(await dataDirInUse(target.dataDir))) {
      // No gateway runs this registry, so nobody writes: hold its data folder so that none starts meanwhile.
      const lock = await lockDataDir(target.dataDir, () => options.say(`lost the lock on ${target.dataDir}: a gateway may have started`)).catch((error: Error) => {
        throw new GcError(`cannot hold ${target.dataDir} for the collection: ${error.message}`);
      });
      try {
        options.say(`no gateway runs the embedded registry in ${target.dataDir}; holding the folder while collecting`);
        return { target, dryRun: options.dryRun, result: await collect(), held: 'data-folder', gateways: 0, leftOn: false };
      } finally {
        await lock.release();
      }
    }
    if (options.dryRun) {
      options.say('dry run: nothing is deleted and writes are not held');
      return { target, dryRun: true, result: await collect(), held: 'nothing', gateways: 0, leftOn: false };
    }
    return collectInMaintenance(options, target, collect);
  });
}

async function collectInMaintenance(options: GcOptions, target: GcTarget, collect: () => Promise<CollectorResult>): Promise<GcReport> {
  const file = options.config.maintenanceFile;
  const current = await readMaintenanceState(file).catch((error: Error) => {
    throw new GcError(`${error.message}; fix or remove it first (${settingName('maintenance_file')})`);
  });
  let id: string;
  let switched = false;
  if (current.on && current.id !== undefined) {
    id = current.id;
    options.say(`read-only maintenance is already on (since ${current.since ?? '?'}, by ${current.by ?? '?'}): collecting within it, and it stays on`);
  } else {
    const outcome = await switchOn(file, options.by, 'garbage collection');
    id = outcome.state.id ?? '';
    switched = outcome.changed;
    options.say(switched ? `read-only maintenance on (${file}): writes get 503 until the collection ends` : `read-only maintenance was switched on meanwhile by ${outcome.state.by ?? '?'}; collecting within it`);
  }
  let collectorStarted = false;
  try {
    let drained;
    try {
      drained = await waitForWritesToDrain({ maintenanceFile: file, id, timeoutMs: options.waitMs, progress: options.say, signal: options.signal });
    } catch (error) {
      if (error instanceof DrainTimeout) throw new GcError(`${error.message}. Nothing was collected; try again later, or wait longer with --wait SECONDS`);
      throw error;
    }
    const count = drained.gateways.length;
    if (count === 0 && target.kind === 'embedded') {
      throw new GcError(
        `a gateway runs the embedded registry in ${target.dataDir}, but none reports in ${reportFolder(file)}: it must use another ${settingName('maintenance_file')} ` +
          '(run `gateway gc` with the same settings as `serve`). Nothing was collected',
      );
    }
    if (count === 0 && !options.allowNoGateway) {
      throw new GcError(
        `no running gateway reports in ${reportFolder(file)}, so nothing shows that writes are held: gateways with another ${settingName('maintenance_file')}, ` +
          'or that cannot write that folder, would accept pushes during the collection. Run `gateway gc` with the same settings as the gateways, ' +
          'or add --no-gateway when no gateway is running. Nothing was collected',
      );
    }
    options.say(count === 0 ? 'no gateway is running' : `${count} gateway${count === 1 ? ' holds' : 's hold'} writes, none in flight; collecting`);
    collectorStarted = true;
    const result = await collect();
    return { target, dryRun: false, result, held: switched ? 'maintenance' : 'maintenance-already-on', gateways: count, leftOn: !switched || target.cache !== undefined };
  } finally {
    if (switched && collectorStarted && target.cache !== undefined) {
      options.say(
        `read-only maintenance stays ON: the registry keeps a blob descriptor cache (storage.cache.blobdescriptor: ${target.cache}) that still vouches for the blobs just removed. ` +
          'Restart every registry on this storage (under compose: `docker compose restart registry`), then run `gateway maintenance off`',
      );
    } else if (switched) {
      const off = await switchOff(file, options.by, id).catch((error: Error) => error);
      if (off instanceof Error) options.say(`could not switch read-only maintenance off: ${off.message}; run \`gateway maintenance off\``);
      else if (off.changed) options.say('read-only maintenance off: writes are accepted again');
      else options.say(`read-only maintenance was changed meanwhile by ${off.state.by ?? '?'}; left as it is`);
    }
  }
}
