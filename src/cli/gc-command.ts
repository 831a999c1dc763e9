// `gateway gc`: the registry's garbage collection with writes held on every gateway, and maintenance switched off again whatever happens.

import { execFile } from 'node:child_process';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { collectGarbage, GcError } from '../ops/gc.js';
import { describeGcReport } from '../ops/gc-report.js';
import { gcTarget } from '../ops/gc-target.js';
import { operator } from '../ops/maintenance-file.js';
import { parseSeconds, settingsFor } from './maintenance-command.js';

export interface GcCommandOptions {
  config?: string;
  dryRun?: boolean;
  deleteUntagged?: boolean;
  wait: number;
  /** commander's negation of --no-gateway. */
  gateway: boolean;
  verbose?: boolean;
}

const defaultWaitSeconds = 300;

/** The registry's version line (`github.com/docker/distribution 2.8.2`), or undefined. */
function registryVersion(binary: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(binary, ['--version'], { timeout: 10_000 }, (error, stdout) => resolve(error ? undefined : stdout.trim()));
  });
}

/**
 * Ctrl-C or SIGTERM while collecting: the collector (or the wait) is stopped and maintenance is
 * switched off before the command exits; a second signal exits at once.
 */
function abortOnSignals(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const handler = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write(`${signal}: stopping the collection and switching maintenance off (again to exit at once)\n`);
    controller.abort(new GcError(`stopped by ${signal}`));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: controller.signal,
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

export async function gc(options: GcCommandOptions): Promise<void> {
  const config = settingsFor(options);
  const say = (line: string) => process.stderr.write(`${line}\n`);
  if (options.deleteUntagged) {
    const target = await gcTarget(config, process.env).catch((error: Error) => {
      throw new CliError(error.message);
    });
    const version = await registryVersion(target.binary);
    if (version === undefined || / v?2\./.test(` ${version.split(' ').pop() ?? ''}`)) {
      say(
        `warning: ${version ?? target.binary} deletes with --delete-untagged also the platform images of multi-arch images (their manifests carry no tag) ` +
          'and untagged artifacts such as signatures (distribution issue 3004); use it only where no repository holds multi-arch images or referrers',
      );
    }
  }
  const signals = abortOnSignals();
  try {
    const report = await collectGarbage({
      config,
      env: process.env,
      dryRun: options.dryRun === true,
      deleteUntagged: options.deleteUntagged === true,
      waitMs: options.wait * 1000,
      allowNoGateway: !options.gateway,
      by: operator('gateway gc'),
      say,
      onCollectorLine: options.verbose ? (line) => process.stderr.write(`  | ${line}\n`) : undefined,
      signal: signals.signal,
    });
    process.stdout.write(`${describeGcReport(report).summary}\n`);
    if (report.leftOn && report.held === 'maintenance') process.exitCode = 3;
  } catch (error) {
    if (error instanceof GcError) throw new CliError(error.message);
    if (signals.signal.aborted) throw new CliError(`${(signals.signal.reason as Error).message}; nothing more was collected`);
    throw error;
  } finally {
    signals.dispose();
  }
}

export function addGcCommand(cli: Command): void {
  cli
    .command('gc')
    .description(
      "collect the registry's garbage safely: read-only maintenance on, wait for writes in flight on every gateway, run the registry's own `garbage-collect`, report what it removed, maintenance off (also when it fails)",
    )
    .option('-c, --config <file>', 'YAML file with settings (the same as serve uses)')
    .option('--dry-run', 'report what would be removed; deletes nothing and holds no writes')
    .option('--delete-untagged', 'also delete manifests no tag names (careful with multi-arch images on registry 2.x: see the warning)')
    .option('--wait <seconds>', `how long to wait for writes in flight before giving up (default ${defaultWaitSeconds})`, parseSeconds, defaultWaitSeconds)
    .option('--no-gateway', 'collect although no running gateway reports (only when no gateway serves this registry)')
    .option('--verbose', "print the collector's own output")
    .action(gc);
}
