// `gateway maintenance on|off|status`: the read-only switch every gateway sharing the file obeys, and what each gateway reports.

import type { Command } from 'commander';
import { loadConfig, type Config } from '../config/config.js';
import { FileLockError } from '../config/files.js';
import { CliError } from '../errors.js';
import { gatewayName, liveReports, operator, type MaintenanceState, readMaintenanceState, reportFolder, switchOff, switchOn } from '../ops/maintenance-file.js';
import { DrainTimeout, waitForWritesToDrain } from '../ops/maintenance-wait.js';
import { announceMaintenanceFromCommand } from '../state/command-notices.js';

interface CommonOptions {
  config?: string;
}

/** The settings as `serve` would load them, for the maintenance file's place. */
export function settingsFor(options: CommonOptions): Readonly<Config> {
  return loadConfig({ file: options.config, env: process.env, cwd: process.cwd() }).config;
}

/** "--wait 300" in seconds, 0 to a day. */
export function parseSeconds(value: string): number {
  const seconds = Number(value);
  if (!/^\d+$/.test(value) || seconds > 86_400) throw new CliError(`--wait must be whole seconds from 0 to 86400, got "${value}"`, 2);
  return seconds;
}

/** Runs a switch, turning a lock that could not be had into the command's refusal. */
async function switching<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof FileLockError) throw new CliError(error.message);
    throw new CliError((error as Error).message);
  }
}

async function on(options: CommonOptions & { reason?: string; wait?: number }): Promise<void> {
  if (options.reason !== undefined && (options.reason.length > 200 || /[\x00-\x1f]/.test(options.reason))) throw new CliError('--reason must be one line of at most 200 characters', 2);
  const config = settingsFor(options);
  const file = config.maintenanceFile;
  const outcome = await switching(() => switchOn(file, operator('gateway maintenance on'), options.reason ?? 'maintenance'));
  const { state } = outcome;
  process.stdout.write(
    outcome.changed
      ? `read-only maintenance is ON (${file}): gateways sharing it refuse writes with 503 within a second; pulls go on\n`
      : `read-only maintenance was already on since ${state.since ?? '?'} (by ${state.by ?? '?'}); left as it is\n`,
  );
  if (outcome.changed) await tellGateways(config, state);
  if (options.wait === undefined) return;
  try {
    const drained = await waitForWritesToDrain({
      maintenanceFile: file,
      id: state.id ?? '',
      timeoutMs: options.wait * 1000,
      progress: (line) => process.stderr.write(`${line}\n`),
    });
    const count = drained.gateways.length;
    process.stdout.write(count === 0 ? `no gateway reports in ${reportFolder(file)}: nothing to wait for\n` : `${count} gateway${count === 1 ? ' holds' : 's hold'} writes, none in flight\n`);
  } catch (error) {
    if (error instanceof DrainTimeout) throw new CliError(`${error.message}. Maintenance stays on; \`gateway maintenance off\` ends it`);
    throw error;
  }
}

async function off(options: CommonOptions): Promise<void> {
  const config = settingsFor(options);
  const outcome = await switching(() => switchOff(config.maintenanceFile, operator('gateway maintenance off')));
  process.stdout.write(outcome.changed ? 'read-only maintenance is OFF: gateways accept writes again within a second\n' : 'read-only maintenance was not on\n');
  // Told even when this file was off already: a gateway that took an "on" from elsewhere takes this later "off".
  await tellGateways(config, outcome.state);
}

/** With redis_url: the switch reaches the gateways that do not share the file too. */
async function tellGateways(config: Readonly<Config>, state: MaintenanceState): Promise<void> {
  const told = await announceMaintenanceFromCommand(config, state);
  if (told !== undefined) (told.startsWith('warning:') ? process.stderr : process.stdout).write(`${told}\n`);
}

async function status(options: CommonOptions): Promise<void> {
  const config = settingsFor(options);
  const file = config.maintenanceFile;
  let state;
  try {
    state = await readMaintenanceState(file);
  } catch (error) {
    process.stdout.write(`maintenance file: ${(error as Error).message}; gateways keep the state they had\n`);
    process.exitCode = 1;
  }
  if (state !== undefined) {
    const who = [state.since ? `since ${state.since}` : undefined, state.by ? `by ${state.by}` : undefined, state.reason ? `(${state.reason})` : undefined].filter(Boolean).join(' ');
    process.stdout.write(`read-only maintenance: ${state.on ? 'ON' : 'off'}${who ? ` ${who}` : ''}\n  file: ${file}\n`);
  }
  const { live, problems } = await liveReports(file);
  if (live.length === 0) process.stdout.write(`  no running gateway reports in ${reportFolder(file)}\n`);
  for (const { report, ageMs } of live) {
    const seen = report.maintenance.on
      ? state?.on && report.maintenance.id === state.id
        ? 'in maintenance'
        : 'still in an earlier maintenance period (its file went missing or broke: `gateway maintenance off` ends it)'
      : state?.on
        ? 'not in maintenance yet'
        : 'accepting writes';
    process.stdout.write(`  gateway ${gatewayName(report)}: ${seen}, ${report.writesInFlight} write${report.writesInFlight === 1 ? '' : 's'} in flight (reported ${Math.round(ageMs / 1000)} s ago)\n`);
  }
  for (const problem of problems) process.stdout.write(`  warning: ${problem}\n`);
}

export function addMaintenanceCommand(cli: Command): void {
  const maintenance = cli
    .command('maintenance')
    .description('read-only maintenance: every gateway sharing the maintenance file refuses writes (503) while pulls go on');
  maintenance
    .command('on')
    .description('switch read-only maintenance on')
    .option('-c, --config <file>', 'YAML file with settings (to find the maintenance file)')
    .option('--reason <text>', 'what it is for (shown in the refusals clients get)')
    .option('--wait <seconds>', 'then wait, at most this long, until every gateway has seen it and has no write in flight (exit 1 if not)', parseSeconds)
    .action(on);
  maintenance
    .command('off')
    .description('switch read-only maintenance off')
    .option('-c, --config <file>', 'YAML file with settings (to find the maintenance file)')
    .action(off);
  maintenance
    .command('status')
    .description('print the switch and what every running gateway reports (its state, its writes in flight)')
    .option('-c, --config <file>', 'YAML file with settings (to find the maintenance file)')
    .action(status);
}
