// `gateway retention [--dry-run] [--gc]`: the `retention:` rules of the config file applied through the registry API, optionally followed by a collection.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { pino } from 'pino';
import { parse as parseYaml } from 'yaml';
import type { Authorizer } from '../access/access.js';
import { AllowAuthenticated, loadAccessFile } from '../access/access-rules.js';
import type { Config } from '../config/config.js';
import { dataDirInUse } from '../config/data-lock.js';
import { settingName } from '../config/settings.js';
import { CliError } from '../errors.js';
import { withStorageLock } from '../ops/gc.js';
import { planRetention, type RetentionPlan } from '../ops/retention.js';
import { applyRetention } from '../ops/retention-apply.js';
import { describeRule } from '../ops/retention-rules.js';
import { UpstreamPool } from '../registry/upstreams.js';
import { gc } from './gc-command.js';
import { parseSeconds, settingsFor } from './maintenance-command.js';

interface RetentionOptions {
  config?: string;
  dryRun?: boolean;
  gc?: boolean;
  wait: number;
  verbose?: boolean;
}

/** Where the registry answers: GATEWAY_UPSTREAM, or the embedded registry's address from its config (while a gateway runs it). */
async function registryUrls(config: Readonly<Config>): Promise<URL[]> {
  if (config.upstreams.length > 0) return config.upstreams;
  const file = path.join(config.dataDir, 'registry.yml');
  if (!existsSync(file) || !(await dataDirInUse(config.dataDir))) {
    throw new CliError(`no gateway runs the embedded registry in ${config.dataDir} now: start it (\`gateway serve\`) first, retention deletes through the registry's API`);
  }
  const document = parseYaml(await readFile(file, 'utf8')) as { http?: { addr?: unknown } } | null;
  const address = document?.http?.addr;
  if (typeof address !== 'string' || !/^127\.0\.0\.1:\d+$/.test(address)) throw new CliError(`${file} names no loopback address for the embedded registry`);
  return [new URL(`http://${address}`)];
}

/** The access file's immutable-tag rules (the gateway's own reading of it): retention never touches those tags. */
async function immutableRules(config: Readonly<Config>): Promise<Authorizer> {
  if (!existsSync(config.accessFile)) {
    if (config.accessFileRequired) throw new CliError(`${settingName('access')}: ${config.accessFile} does not exist`);
    return new AllowAuthenticated();
  }
  try {
    return (await loadAccessFile(config.accessFile)).rules;
  } catch (error) {
    throw new CliError(`${(error as Error).message}: retention needs the access file's immutable_tags`, 2);
  }
}

function printPlan(plan: RetentionPlan, verbose: boolean): void {
  const rules = [...new Set(plan.decisions.map((decision) => decision.rule))];
  for (const rule of rules) {
    process.stdout.write(`${describeRule(rule)}\n`);
    for (const decision of plan.decisions.filter((item) => item.rule === rule && (verbose || item.delete))) {
      process.stdout.write(`  ${decision.delete ? 'delete' : 'keep  '} ${decision.repository}:${decision.tag}  ${decision.reason.replace(/^(delete|keep): /, '')}\n`);
    }
  }
  for (const manifest of plan.manifests) process.stdout.write(`manifest ${manifest.repository}@${manifest.digest}: no tag left (${manifest.tags.join(', ')}), deleted too\n`);
}

async function retention(options: RetentionOptions): Promise<void> {
  const config = settingsFor(options);
  const rules = config.retention ?? [];
  if (rules.length === 0) throw new CliError(`no retention rules: add a \`retention:\` list to the settings file (--config); see the README, "Retention"`, 2);
  const authorizer = await immutableRules(config);
  const upstreams = new UpstreamPool(await registryUrls(config), { logger: pino({ level: 'silent' }), checkIntervalMs: 0 });
  let failed = 0;
  try {
    await withStorageLock(config.maintenanceFile, 'gateway retention', async () => {
      const plan = await planRetention({ upstreams, authorizer, rules, problem: (line) => process.stderr.write(`warning: ${line}\n`) });
      const doomed = plan.decisions.filter((decision) => decision.delete);
      printPlan(plan, options.verbose === true);
      const kept = plan.decisions.length - doomed.length;
      if (options.dryRun) {
        process.stdout.write(
          `dry run: would delete ${doomed.length} of ${plan.decisions.length} tags the rules govern in ${plan.repositories} repositories (${kept} kept), ` +
            `and ${plan.manifests.length} manifest${plan.manifests.length === 1 ? '' : 's'} no tag would name any more; immutable tags are never governed\n`,
        );
        return;
      }
      const applied = await applyRetention(plan, {
        upstreams,
        authorizer,
        tagDone: ({ decision, outcome, detail }) => {
          if (outcome !== 'deleted') process.stderr.write(`${outcome === 'failed' ? 'error' : 'note'}: tag ${decision.repository}:${decision.tag} ${outcome}${detail ? `: ${detail}` : ''}\n`);
        },
        manifestDone: ({ manifest, outcome, detail }) => {
          if (outcome !== 'deleted') process.stderr.write(`${outcome === 'failed' ? 'error' : 'note'}: manifest ${manifest.repository}@${manifest.digest} ${outcome}${detail ? `: ${detail}` : ''}\n`);
        },
      });
      const deleted = applied.tags.filter((item) => item.outcome === 'deleted').length;
      const manifests = applied.manifests.filter((item) => item.outcome === 'deleted').length;
      failed = [...applied.tags, ...applied.manifests].filter((item) => item.outcome === 'failed').length;
      process.stdout.write(
        `deleted ${deleted} of ${doomed.length} tags and ${manifests} manifest${manifests === 1 ? '' : 's'} no tag names any more${failed > 0 ? `; ${failed} failed` : ''} (${kept} tags kept); ` +
          'their storage is freed by `gateway gc`\n',
      );
    });
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError((error as Error).message);
  } finally {
    upstreams.close();
  }
  if (failed > 0) throw new CliError(`${failed} deletion${failed === 1 ? '' : 's'} failed (see above)`);
  if (options.gc && !options.dryRun) await gc({ config: options.config, wait: options.wait, gateway: true, verbose: options.verbose });
}

export function addRetentionCommand(cli: Command): void {
  cli
    .command('retention')
    .description('delete the tags the `retention:` rules of the settings file say go (by image creation date; immutable tags never), through the registry API')
    .option('-c, --config <file>', 'YAML file with settings and the retention rules (the same as serve uses)')
    .option('--dry-run', 'list what would be deleted, and delete nothing')
    .option('--gc', 'run `gateway gc` afterwards, to free the storage')
    .option('--wait <seconds>', 'with --gc: how long to wait for writes in flight (default 300)', parseSeconds, 300)
    .option('--verbose', 'also list the tags that stay, with the reason')
    .action(retention);
}
