// Starts a whole gateway from a Config: keys and users on first run, upstream (or embedded registry), HTTPS server.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, unwatchFile, watchFile } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { AccessFileError, AllowAuthenticated, loadAccessFile, type RuleSet } from './access-rules.js';
import { createApp, publicHostResolver } from './app.js';
import { Authenticator, PasswordChecker } from './authenticator.js';
import { createCertificates, defaultHosts, ensureTokenSigningKey } from './certs.js';
import { CiTokenStore } from './ci-tokens.js';
import type { Config } from './config.js';
import { ConfigError } from './errors.js';
import { addUser, UserStore } from './htpasswd.js';
import { CurrentRules } from './policy.js';
import { createRegistryProxy } from './proxy.js';
import { LoginThrottle } from './throttle.js';
import { UpstreamPool } from './upstreams.js';
import { findRegistryBinary, RegistryProcess, registryInstallHint } from './registry-process.js';
import { startHttpsServer } from './server.js';
import { TokenAuthority } from './token.js';

export interface GatewayOptions {
  logger: Logger;
  /** Environment for finding the registry binary (PATH) and for its child process. */
  env: NodeJS.ProcessEnv;
  /** Where one-time messages for the operator go (generated password, generated certificates). */
  announce(message: string): void;
}

export interface RunningGateway {
  /** https://HOST:PORT as bound (127.0.0.1 when listening on all addresses). */
  url: string;
  port: number;
  upstreams: URL[];
  /** Re-reads htpasswd, the access file, the CI tokens and the TLS certificate (what SIGHUP does). */
  reload(): Promise<void>;
  close(): Promise<void>;
}

function bothOrNeither(a: string, b: string, aKey: string, bKey: string): boolean {
  const hasA = existsSync(a);
  const hasB = existsSync(b);
  if (hasA !== hasB) {
    const [present, missing, key] = hasA ? [a, b, bKey] : [b, a, aKey];
    throw new ConfigError(key, `${missing} is missing while ${present} exists; provide both or neither`);
  }
  return hasA;
}

/** First run: certificates as `gateway certs` makes them, when the operator supplied none. */
async function ensureTlsFiles(config: Readonly<Config>, options: GatewayOptions): Promise<void> {
  if (bothOrNeither(config.tlsCert, config.tlsKey, 'GATEWAY_TLS_CERT', 'GATEWAY_TLS_KEY')) return;
  const dir = path.dirname(config.tlsCert);
  if (path.dirname(config.tlsKey) !== dir || path.basename(config.tlsCert) !== 'server.crt' || path.basename(config.tlsKey) !== 'server.key') {
    throw new ConfigError('GATEWAY_TLS_CERT', `${config.tlsCert} does not exist; create it, or leave GATEWAY_TLS_CERT/GATEWAY_TLS_KEY at their defaults to have them generated`);
  }
  const hosts = defaultHosts();
  if (config.publicUrl && !hosts.includes(config.publicUrl.hostname)) hosts.unshift(config.publicUrl.hostname.replace(/^\[|\]$/g, ''));
  const files = await createCertificates({ dir, hosts });
  options.announce(
    `No TLS certificate found: created a local CA and a server certificate in ${dir} for ${hosts.join(', ')}.\n` +
      `Clients must trust ${files.caCert} (see \`gateway certs --help\`), or supply your own certificate.`,
  );
}

/** First run: an admin user with a random password, shown once. */
async function ensureUsers(config: Readonly<Config>, options: GatewayOptions): Promise<void> {
  if (existsSync(config.htpasswd)) return;
  const password = randomBytes(18).toString('base64url');
  await addUser(config.htpasswd, 'admin', password);
  options.announce(
    `No htpasswd file found: created ${config.htpasswd} with user "admin" and password\n\n    ${password}\n\n` +
      'This password is shown only once. Change it with `gateway user add admin`, add users with `gateway user add NAME`.',
  );
}

async function startEmbeddedRegistry(config: Readonly<Config>, options: GatewayOptions): Promise<RegistryProcess> {
  const binary = findRegistryBinary(config.registryBin, options.env.PATH);
  if (!binary) {
    const wanted = config.registryBin ? `GATEWAY_REGISTRY_BIN=${config.registryBin} is not an executable file. ` : 'No registry binary (docker-registry or registry) found on PATH. ';
    throw new ConfigError('GATEWAY_UPSTREAM', `${wanted}${registryInstallHint}`);
  }
  const registry = new RegistryProcess({ binary, dataDir: config.dataDir, logger: options.logger.child({ component: 'registry' }), env: options.env });
  await registry.start();
  options.logger.info({ binary, url: registry.url, storage: path.join(config.dataDir, 'registry') }, 'embedded registry started');
  return registry;
}

/** The rules at start-up: a bad access file stops the gateway with its line and reason. */
async function loadRules(config: Readonly<Config>, logger: Logger): Promise<RuleSet> {
  if (!existsSync(config.accessFile)) {
    if (config.accessFileRequired) throw new ConfigError('GATEWAY_ACCESS', `${config.accessFile} does not exist`);
    logger.info({ file: config.accessFile }, 'no access file: every authenticated user may do everything, anonymous callers nothing');
    return new AllowAuthenticated();
  }
  try {
    const { rules, warnings } = await loadAccessFile(config.accessFile);
    for (const warning of warnings) logger.warn({ file: config.accessFile }, warning);
    logger.info({ file: config.accessFile, anonymous: rules.allowsAnonymous() }, 'access rules loaded');
    return rules;
  } catch (error) {
    if (error instanceof AccessFileError) throw new ConfigError('GATEWAY_ACCESS', error.message);
    throw error;
  }
}

/**
 * Calls `reload` when a file changes. Polling survives the atomic rename that `gateway user add`
 * and editors do, which fs.watch loses track of; the short settle delay lets a non-atomic writer
 * (Apache's htpasswd) finish first.
 */
function watchForChanges(file: string, reload: () => Promise<void>): () => void {
  let settle: NodeJS.Timeout | undefined;
  watchFile(file, { interval: 500, persistent: false }, (current, previous) => {
    if (current.mtimeMs === previous.mtimeMs && current.ino === previous.ino && current.size === previous.size) return;
    clearTimeout(settle);
    settle = setTimeout(() => void reload(), 150);
  });
  return () => {
    unwatchFile(file);
    clearTimeout(settle);
  };
}

export async function startGateway(config: Readonly<Config>, options: GatewayOptions): Promise<RunningGateway> {
  const { logger } = options;
  await ensureTlsFiles(config, options);
  if (!bothOrNeither(config.tokenKey, config.tokenCert, 'GATEWAY_TOKEN_KEY', 'GATEWAY_TOKEN_CERT')) {
    await ensureTokenSigningKey(config.tokenKey, config.tokenCert);
    logger.info({ key: config.tokenKey, cert: config.tokenCert }, 'created token signing key');
  }
  await ensureUsers(config, options);

  const tokens = new TokenAuthority({
    privateKeyPem: readFileSync(config.tokenKey, 'utf8'),
    certificatePem: readFileSync(config.tokenCert, 'utf8'),
    issuer: config.tokenIssuer,
    service: config.service,
    ttlSeconds: config.tokenTtlSeconds,
  });
  const users = await UserStore.load(config.htpasswd);
  for (const problem of users.problems()) logger.warn({ file: config.htpasswd }, `htpasswd ${problem}`);
  const checker = new PasswordChecker();
  const authenticator = new Authenticator(users, checker, { cacheTtlMs: config.basicCacheSeconds * 1000 });
  const ciTokens = await CiTokenStore.load(config.ciTokensFile);
  const logins = { authenticator, users, ciTokens, throttle: new LoginThrottle() };
  const rules = new CurrentRules(await loadRules(config, logger));

  const registry = config.upstreams.length > 0 ? undefined : await startEmbeddedRegistry(config, options);
  const upstreamUrls = registry ? [new URL(registry.url)] : config.upstreams;
  const pool = new UpstreamPool(upstreamUrls, { logger });
  const proxy = createRegistryProxy({ upstreams: pool, logger, publicHost: publicHostResolver(config) });

  const app = createApp({ config, logger, tokens, logins, authorizer: rules, proxy, upstreams: pool, upstreamReady: () => pool.checkAll() });
  let server;
  try {
    server = await startHttpsServer(app, { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey), listen: config.listen });
  } catch (error) {
    pool.close();
    await registry?.stop();
    await checker.close();
    throw error;
  }

  const reloadUsers = async () => {
    try {
      const problems = await users.reload();
      logger.info({ file: config.htpasswd, users: users.users().length }, 'htpasswd reloaded');
      for (const problem of problems) logger.warn({ file: config.htpasswd }, `htpasswd ${problem}`);
    } catch (error) {
      logger.error({ file: config.htpasswd, err: (error as Error).message }, 'htpasswd reload failed; keeping the previous users');
    }
  };
  const reloadRules = async () => {
    try {
      if (!existsSync(config.accessFile)) {
        rules.replace(new AllowAuthenticated());
        logger.warn({ file: config.accessFile }, 'access file removed: every authenticated user may do everything');
        return;
      }
      const loaded = await loadAccessFile(config.accessFile);
      for (const warning of loaded.warnings) logger.warn({ file: config.accessFile }, warning);
      rules.replace(loaded.rules);
      logger.info({ file: config.accessFile }, 'access rules reloaded');
    } catch (error) {
      logger.error({ file: config.accessFile, err: (error as Error).message }, 'access file reload failed; keeping the previous rules');
    }
  };
  const reloadCiTokens = async () => {
    try {
      await ciTokens.reload();
      logger.info({ file: config.ciTokensFile, tokens: ciTokens.list().length }, 'CI tokens reloaded');
    } catch (error) {
      logger.error({ file: config.ciTokensFile, err: (error as Error).message }, 'CI tokens reload failed; keeping the previous tokens');
    }
  };
  const stopWatching = [
    watchForChanges(config.htpasswd, reloadUsers),
    watchForChanges(config.accessFile, reloadRules),
    watchForChanges(config.ciTokensFile, reloadCiTokens),
  ];

  const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? '127.0.0.1' : config.listen.host;
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${server.address.port}`;
  logger.info({ url, upstreams: upstreamUrls.map((u) => u.origin), auth: config.auth, service: config.service, embedded: registry !== undefined }, 'gateway listening');

  let closed: Promise<void> | undefined;
  return {
    url,
    port: server.address.port,
    upstreams: upstreamUrls,
    async reload() {
      await Promise.all([reloadUsers(), reloadRules(), reloadCiTokens()]);
      try {
        server.server.setSecureContext({ cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey), minVersion: 'TLSv1.2' });
        logger.info({ cert: config.tlsCert }, 'TLS certificate reloaded');
      } catch (error) {
        logger.error({ err: (error as Error).message }, 'TLS certificate reload failed; keeping the previous one');
      }
    },
    close() {
      closed ??= (async () => {
        for (const stop of stopWatching) stop();
        await server.close(config.shutdownGraceSeconds * 1000);
        proxy.close();
        pool.close();
        await registry?.stop();
        await checker.close();
        logger.info('gateway stopped');
      })();
      return closed;
    },
  };
}
