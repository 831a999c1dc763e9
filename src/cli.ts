#!/usr/bin/env node
// The `gateway` command: argv -> command. The only module that reads process.env or exits.

import { existsSync, readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { pino } from 'pino';
import { stringify as toYaml } from 'yaml';
import { AllowAuthenticated, loadAccessFile } from './access/access-rules.js';
import { addCertsCommand } from './cli/certs-command.js';
import { addGcCommand } from './cli/gc-command.js';
import { addMaintenanceCommand } from './cli/maintenance-command.js';
import { addRetentionCommand } from './cli/retention-command.js';
import { createCiToken, listCiTokens, parseCiTokenScopes, parseTtl, revokeCiToken, revokeCiTokensOfUser, type CiTokenRecord } from './auth/ci-tokens.js';
import { formatScope } from './access/access.js';
import { announceRevocationFromCommand } from './state/command-notices.js';
import { describeConfig, loadConfig, settingDefault, settingsHelp, settingsMarkdownTable } from './config/config.js';
import { CertificateError, CliError, ConfigError } from './errors.js';
import type { RunningGateway } from './gateway.js';
import { tuneForTransfers } from './registry/transfer-tuning.js';
import { isClusterWorker, reportStartFailure, workerLogFields } from './cluster/worker-role.js';
import { WorkerStartError } from './cluster/messages.js';
import { preflight } from './config/preflight.js';
import { probeProviders } from './auth/chain-setup.js';
import { probeSignIn } from './ui/sign-in-setup.js';
import { describeProviders } from './config/providers.js';
import { addUser, DEFAULT_BCRYPT_COST, listUsers, removeUser, requireUser, validateUserName } from './auth/htpasswd.js';
import { readPassword } from './cli/prompt.js';
import { openCommandAudit, type CommandAudit } from './ops/audit-command.js';
import { describeWebhook } from './ops/webhook-config.js';

const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const htpasswdOption = () => new Option('--htpasswd <file>', 'htpasswd file').default(process.env.GATEWAY_HTPASSWD || settingDefault('htpasswd'));
const ciTokensOption = () => new Option('--tokens <file>', 'CI tokens file').default(process.env.GATEWAY_CI_TOKENS || settingDefault('ci_tokens'));

/** For repeatable options: each use adds one value. */
function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** A second stop signal sooner than this after the first is the same request delivered twice. */
const repeatedSignalMs = 1000;

function parseCost(value: string): number {
  const cost = Number(value);
  if (!Number.isInteger(cost)) throw new CliError(`--cost must be a whole number, got "${value}"`, 2);
  return cost;
}

async function serve(options: { config?: string }): Promise<void> {
  // Stream buffer sizes and garbage collection fit for relaying blobs (src/registry/transfer-tuning.ts).
  tuneForTransfers();
  const { config, warnings } = loadConfig({ file: options.config, env: process.env, cwd: process.cwd() });
  const worker = isClusterWorker();
  const logger = pino({ level: config.logLevel, base: { service: 'registry-gateway', ...workerLogFields() }, timestamp: pino.stdTimeFunctions.isoTime });
  // A cluster worker read the same settings as its primary, which said what was wrong with them.
  if (!worker) for (const warning of warnings) logger.warn(warning);

  // Handlers first: a signal during start-up must still end the embedded registry (process.exit
  // runs the hook that kills it; dying of the signal itself would not).
  let gateway: Pick<RunningGateway, 'close' | 'reload'> | undefined;
  let stopping: { signal: string; at: number } | undefined;
  const stop = (signal: string) => {
    if (stopping) {
      // Ctrl-C signals the whole process group and npm passes its own copy on: one request, twice.
      if (Date.now() - stopping.at < repeatedSignalMs) return;
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = { signal, at: Date.now() };
    if (!gateway) {
      logger.info({ signal }, 'stopping before start-up finished');
      process.exit(1);
    }
    logger.info({ signal, grace_seconds: config.shutdownGraceSeconds }, 'shutting down');
    gateway.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => void gateway?.reload());
  const starting = { logger, env: process.env, announce: (message: string) => process.stderr.write(`\n${message}\n\n`) };
  // Each role loads only its own code: a cluster's primary never serves, so it never loads the server.
  if (worker) {
    const { startWorker } = await import('./cluster/worker.js');
    gateway = await startWorker(config, { ...starting, onStop: () => void (stopping === undefined && stop('SIGTERM')) });
  } else if (config.workers > 1) {
    const { startCluster } = await import('./cluster/primary.js');
    gateway = await startCluster(config, starting);
  } else {
    const { startGateway } = await import('./gateway.js');
    gateway = await startGateway(config, starting);
  }
}

async function userAdd(name: string, options: { htpasswd: string; passwordStdin?: boolean; cost: number }): Promise<void> {
  validateUserName(name);
  const password = await readPassword({ fromStdin: options.passwordStdin === true, confirm: true });
  const outcome = await addUser(options.htpasswd, name, password, options.cost);
  process.stdout.write(`${outcome === 'added' ? 'added' : 'changed password of'} user "${name}" in ${options.htpasswd}\n`);
}

/** Removes the user and deletes their CI tokens, so that adding the user again does not bring the tokens back. */
async function userRemove(name: string, options: { htpasswd: string; tokens: string }): Promise<void> {
  const removed = await removeUser(options.htpasswd, name);
  let revoked: number;
  try {
    revoked = await revokeCiTokensOfUser(options.tokens, name);
  } catch (error) {
    const done = removed ? `removed user "${name}" from ${options.htpasswd}, but` : `no user "${name}" in ${options.htpasswd}, and`;
    throw new CliError(
      `${done} could not revoke their CI tokens in ${options.tokens}: ${(error as Error).message}. ` +
        `The tokens do not work while the user is absent; fix the file and run this command again`,
    );
  }
  if (!removed && revoked === 0) throw new CliError(`no user "${name}" in ${options.htpasswd}`);
  const tokens = `${revoked} CI token${revoked === 1 ? '' : 's'} of theirs from ${options.tokens}`;
  process.stdout.write(removed ? `removed user "${name}" from ${options.htpasswd} and ${tokens}\n` : `no user "${name}" in ${options.htpasswd}; removed ${tokens}\n`);
}

async function userList(options: { htpasswd: string }): Promise<void> {
  for (const user of await listUsers(options.htpasswd)) process.stdout.write(`${user}\n`);
}

async function tokenCreate(options: { user: string; scope: string[]; ttl: string; description?: string; tokens: string; htpasswd: string }): Promise<void> {
  validateUserName(options.user);
  await requireUser(options.htpasswd, options.user);
  const audit = openAuditForCli(true);
  const created = await createCiToken(options.tokens, {
    user: options.user,
    scopes: parseCiTokenScopes(options.scope),
    ttlSeconds: parseTtl(options.ttl),
    description: options.description,
  });
  process.stderr.write(
    `created CI token ${created.id} for user "${options.user}" (${scopeText(created.record)}), ` +
      `expires ${created.record.expiresAt ?? 'never'}.\nUse it as the password, e.g. \`docker login -u ${options.user} --password-stdin\`. It is shown only once:\n\n`,
  );
  process.stdout.write(`${created.credential}\n`);
  auditFromCli(audit, { type: 'ci-token.created', id: created.id, owner: options.user });
}

/**
 * The token commands' audit trail (GATEWAY_AUDIT_LOG: the gateway's file, appended to, or syslog),
 * checked before the command acts. `required`: a token is not created when its line cannot be
 * written; a revocation goes ahead regardless (refusing it would keep a token alive), with a warning.
 */
function openAuditForCli(required: boolean): CommandAudit | undefined {
  try {
    return openCommandAudit(process.env.GATEWAY_AUDIT_LOG, process.cwd());
  } catch (error) {
    const why = `cannot write the audit log GATEWAY_AUDIT_LOG (audit_log): ${(error as Error).message}`;
    if (required) throw new CliError(`${why}; no token was created`);
    process.stderr.write(`warning: ${why}; going ahead without an audit line\n`);
    return undefined;
  }
}

function auditFromCli(audit: CommandAudit | undefined, event: { type: 'ci-token.created' | 'ci-token.revoked'; id: string; owner: string }): void {
  try {
    audit?.write(event);
  } catch (error) {
    process.stderr.write(`warning: ${event.type} ${event.id} was not written to the audit log: ${(error as Error).message}\n`);
  }
}

/** A token's scopes; a personal access token has none of its own: the access rules decide, with the groups it carries. */
function scopeText(record: CiTokenRecord): string {
  const groups = record.source === undefined ? '' : `${record.scopes.length === 0 ? 'access rules, ' : ''}groups [${(record.groups ?? []).join(',')}]`;
  return [...record.scopes.map(formatScope), groups].filter((text) => text !== '').join(' ');
}

async function tokenList(options: { tokens: string }): Promise<void> {
  const records = await listCiTokens(options.tokens);
  if (records.length === 0) {
    process.stderr.write(`no CI tokens in ${options.tokens}\n`);
    return;
  }
  for (const record of records) {
    const description = record.description ? `  "${record.description}"` : '';
    const origin = record.source === undefined ? '' : `  from ${record.source} sign-in "${record.provider ?? ''}"`;
    process.stdout.write(`${record.id}  ${record.user}  ${scopeText(record)}  created ${record.createdAt}  expires ${record.expiresAt ?? 'never'}${origin}${description}\n`);
  }
}

async function tokenRevoke(id: string, options: { tokens: string }): Promise<void> {
  const owner = (await listCiTokens(options.tokens).catch(() => [])).find((record) => record.id === id)?.user ?? 'unknown';
  const audit = openAuditForCli(false);
  if (!(await revokeCiToken(options.tokens, id))) throw new CliError(`no CI token ${id} in ${options.tokens}`);
  process.stdout.write(`revoked CI token ${id}; a running gateway stops accepting it within a second\n`);
  auditFromCli(audit, { type: 'ci-token.revoked', id, owner });
  const told = await announceRevocationFromCommand(id, process.env, process.cwd());
  if (told !== undefined) (told.startsWith('warning:') ? process.stderr : process.stdout).write(`${told}\n`);
}

async function accessCheck(user: string, action: string, repository: string, options: { config?: string; access?: string; groups?: string[] }): Promise<void> {
  const { config } = loadConfig({ file: options.config, env: process.env, cwd: process.cwd() });
  const file = options.access ?? config.accessFile;
  const present = existsSync(file);
  let rules;
  try {
    rules = present ? (await loadAccessFile(file)).rules : new AllowAuthenticated();
  } catch (error) {
    throw new CliError((error as Error).message, 2);
  }
  // --groups: the access groups a provider (a directory) would vouch for, as after a directory login.
  const providerGroups = (options.groups ?? []).flatMap((list) => list.split(',')).map((group) => group.trim()).filter((group) => group.length > 0);
  const identity = { user: user === 'anonymous' ? null : user, ...(providerGroups.length > 0 ? { groups: providerGroups } : {}) };
  const explanation = rules.explain(identity, action, repository);
  process.stdout.write(`${explanation.allowed ? 'allowed' : 'denied'}: ${explanation.reason}\n  rules: ${present ? file : `${file} (missing)`}\n`);
  const groups = identity.user === null ? [] : rules.groupsOf(identity.user);
  if (groups.length > 0) process.stdout.write(`  groups of ${user}: ${groups.join(', ')}\n`);
  if (identity.user !== null && providerGroups.length > 0) process.stdout.write(`  groups given with --groups: ${providerGroups.join(', ')}\n`);
  if (!explanation.allowed) process.exitCode = 1;
}

/** What `serve` checks before it starts, short of binding the port: the same code, so the same verdict and messages. */
async function configCheck(options: { config?: string }): Promise<void> {
  const { config, warnings } = loadConfig({ file: options.config, env: process.env, cwd: process.cwd() });
  const checked = await preflight(config, process.env);
  for (const warning of [...warnings, ...checked.warnings, ...checked.fileRemarks]) process.stderr.write(`warning: ${warning}\n`);
  const creates = [
    checked.creates.tls ? `a local CA and a server certificate (${config.tlsCert})` : undefined,
    checked.creates.tokenKey ? `a token signing key (${config.tokenKey})` : undefined,
    checked.creates.htpasswd ? `${config.htpasswd} with an admin user` : undefined,
  ].filter((item) => item !== undefined);
  if (creates.length > 0) process.stderr.write(`note: on first start, serve creates ${creates.join(', ')}\n`);
  if (checked.dataDirInUse) process.stderr.write(`note: a gateway is running with ${config.dataDir} now; another serve there would refuse to start\n`);
  const providers = config.providers ?? [];
  process.stdout.write(`configuration is valid:\n${toYaml({ ...describeConfig(config), ...(providers.length > 0 ? { providers: describeProviders(providers) } : {}), ...(config.webhooks?.length ? { webhooks: config.webhooks.map(describeWebhook) } : {}) })}`);
  // What works: each provider contacted as the gateway would; one that cannot be reached fails the check.
  for (const probe of [...(await probeProviders(providers)), ...(await probeSignIn(config))]) {
    process.stderr.write(`${probe.ok ? 'ok' : 'error'}: provider ${probe.name} (${probe.type}): ${probe.detail}\n`);
    if (!probe.ok) process.exitCode = 1;
  }
}

function configTable(): void {
  process.stdout.write(`${settingsMarkdownTable()}\n`);
}

function program(): Command {
  const cli = new Command('gateway')
    .description('HTTPS, htpasswd and token authentication in front of a private Docker/OCI registry')
    .version(version)
    .showHelpAfterError()
    // Each command's options stop at its subcommand, so `certs --dir` and `certs show --dir` stay apart.
    .enablePositionalOptions()
    .exitOverride();

  cli
    .command('serve')
    .description('run the gateway (with no GATEWAY_UPSTREAM, also a local registry with storage under ./data)')
    .option('-c, --config <file>', 'YAML file with settings (keys below); environment variables override it')
    .addHelpText('after', settingsHelp())
    .action(serve);

  addCertsCommand(cli);

  const user = cli.command('user').description('manage users in the htpasswd file (bcrypt, compatible with htpasswd -B and registry:2)');
  user
    .command('add <name>')
    .description('add a user, or change their password')
    .addOption(htpasswdOption())
    .option('--password-stdin', 'read the password from standard input')
    .addOption(new Option('--cost <n>', 'bcrypt cost (4-17)').default(DEFAULT_BCRYPT_COST).argParser(parseCost))
    .action(userAdd);
  user
    .command('remove <name>')
    .description('remove a user and delete their CI tokens')
    .addOption(htpasswdOption())
    .addOption(ciTokensOption())
    .action(userRemove);
  user.command('list').description('list user names').addOption(htpasswdOption()).action(userList);

  const token = cli.command('token').description('CI tokens: long-lived, scope-limited credentials used as a password');
  token
    .command('create')
    .description('create a CI token and print it once')
    .requiredOption('--user <name>', 'user the token logs in as (docker login -u NAME); must be in the htpasswd file')
    .requiredOption('--scope <scope>', 'what it may do, e.g. repository:app/web:pull,push; repeatable', collect)
    .option('--ttl <duration>', 'lifetime: 30d, 12h, 90m, 1w, or never', '90d')
    .option('--description <text>', 'what the token is for')
    .addOption(ciTokensOption())
    .addOption(htpasswdOption())
    .action(tokenCreate);
  token.command('list').description('list CI tokens (never their secrets)').addOption(ciTokensOption()).action(tokenList);
  token.command('revoke <id>').description('revoke a CI token; a running gateway stops accepting it at once').addOption(ciTokensOption()).action(tokenRevoke);

  const access = cli.command('access').description('access rules');
  access
    .command('check <user> <action> <repository>')
    .description('explain whether USER (or "anonymous") may ACTION (pull, push, delete, catalog) on REPOSITORY, and which rule decides; exit 1 when denied')
    .option('-c, --config <file>', 'YAML file with settings (to find the access file)')
    .option('--access <file>', 'access file (default: GATEWAY_ACCESS, or access.yml beside --config)')
    .option('--groups <names>', "access groups a provider puts the user in, as after a directory login (comma-separated; repeatable)", collect)
    .action(accessCheck);

  addMaintenanceCommand(cli);
  addGcCommand(cli);
  addRetentionCommand(cli);

  const config = cli.command('config').description('configuration');
  config
    .command('check')
    .description('run every check serve runs before it starts (settings, certificates, keys, users, access rules, CI tokens, identity providers, registry binary, data folder), contact each provider (LDAP: bind as the service account) and print the effective settings')
    .option('-c, --config <file>', 'YAML file with settings')
    .addHelpText('after', settingsHelp())
    .action(configCheck);
  // For maintainers: the README's Configuration table, generated from the settings table.
  config.command('table', { hidden: true }).description('print the settings as the README table').action(configTable);
  return cli;
}

async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (error) {
    const { text, code } = failure(error);
    // A cluster worker's start-up error is its primary's to print: it ends `serve` with it.
    if (isClusterWorker()) return reportStartFailure(text, code, () => process.exit(code));
    process.stderr.write(text);
    process.exit(code);
  }
}

/** What the command prints for the error that ends it, and its exit code. */
function failure(error: unknown): { text: string; code: number } {
  // Commander printed its own message.
  if (error instanceof CommanderError) return { text: '', code: error.exitCode };
  if (error instanceof WorkerStartError) return { text: error.text, code: error.exitCode };
  if (error instanceof CliError) return { text: `gateway: ${error.message}\n`, code: error.exitCode };
  if (error instanceof CertificateError) return { text: `gateway: ${error.message}\n`, code: error.usage ? 2 : 1 };
  if (error instanceof ConfigError) return { text: `gateway: configuration error: ${error.message}\n`, code: 2 };
  const code = (error as NodeJS.ErrnoException).code;
  return { text: `gateway: ${(error as Error).message ?? String(error)}${code ? ` (${code})` : ''}\n`, code: 1 };
}

await main(process.argv);
