// Starts a whole gateway from a Config: keys and users on first run, upstream (or embedded registry), HTTPS server.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { createApp, publicHostFor, publicHostResolver } from './app.js';
import { Authenticator, PasswordChecker } from './auth/authenticator.js';
import { legacyCaKeyPath } from './tls/ca.js';
import { createCertificates, defaultHosts, ensureTokenSigningKey } from './tls/certs.js';
import type { Config } from './config/config.js';
import { CertificateError, ConfigError } from './errors.js';
import { settingName } from './config/settings.js';
import { loadGatewayFiles } from './config/gateway-files.js';
import { addUser } from './auth/htpasswd.js';
import { createRegistryProxy } from './registry/proxy.js';
import { LoginThrottle } from './auth/throttle.js';
import { UpstreamPool } from './registry/upstreams.js';
import { RegistryProcess } from './registry/registry-process.js';
import { lockDataDir } from './config/data-lock.js';
import { preflight, type Preflight } from './config/preflight.js';
import { startHttpsServer, TLS_OPTIONS } from './tls/server.js';
import { TokenAuthority } from './auth/token.js';

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

/** First run: certificates as `gateway certs` makes them, when the operator supplied none (preflight checked that they may be made). */
async function ensureTlsFiles(config: Readonly<Config>, options: GatewayOptions): Promise<void> {
  const dir = path.dirname(config.tlsCert);
  const hosts = defaultHosts();
  if (config.publicUrl && !hosts.includes(config.publicUrl.hostname)) hosts.unshift(config.publicUrl.hostname.replace(/^\[|\]$/g, ''));
  let files;
  try {
    files = await createCertificates({ dir, hosts });
  } catch (error) {
    if (error instanceof CertificateError) throw new ConfigError(settingName('tls_cert'), error.message);
    throw error;
  }
  options.announce(
    `No TLS certificate found: created a server certificate in ${dir} for ${hosts.join(', ')}, signed by ${files.createdCa ? 'a new' : 'the'} local CA ` +
      `(key ${files.caKey}, which the gateway never reads${files.movedCaKeyFrom ? `; moved there from ${files.movedCaKeyFrom}` : ''}).\n` +
      `Clients must trust ${files.caCert}: \`gateway certs show\` says how. Or supply your own certificate.`,
  );
}

/** The CA key in the certificate folder (where older versions put it) is readable by the gateway, and mounted into it by compose. */
function warnIfCaKeyInCertFolder(config: Readonly<Config>, logger: Logger): void {
  const legacy = legacyCaKeyPath(path.dirname(config.tlsCert));
  if (existsSync(legacy)) logger.warn({ file: legacy }, 'the CA key sits in the certificate folder the gateway reads: run `gateway certs` to move it to the CA folder');
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

async function startEmbeddedRegistry(config: Readonly<Config>, options: GatewayOptions, binary: string): Promise<RegistryProcess> {
  const registry = new RegistryProcess({ binary, dataDir: config.dataDir, logger: options.logger.child({ component: 'registry' }), env: options.env });
  await registry.start();
  options.logger.info({ binary, url: registry.url, storage: path.join(config.dataDir, 'registry') }, 'embedded registry started');
  return registry;
}

/**
 * Checks everything `gateway config check` checks, then, when the registry is embedded, takes the
 * data folder before anything there is read or written: a second gateway on the same folder stops
 * here, having changed nothing. With GATEWAY_UPSTREAM the data folder is not used and not locked.
 */
export async function startGateway(config: Readonly<Config>, options: GatewayOptions): Promise<RunningGateway> {
  const checked = await preflight(config, options.env);
  for (const warning of checked.warnings) options.logger.warn(warning);
  if (checked.registryBinary === undefined) return startChecked(config, options, checked);
  const lock = await lockDataDir(config.dataDir, (error) =>
    options.logger.error({ dataDir: config.dataDir, err: error.message }, 'lost the lock on the data folder: another gateway could start on the same data'),
  );
  try {
    const gateway = await startChecked(config, options, checked);
    return { ...gateway, close: () => gateway.close().finally(() => lock.release()) };
  } catch (error) {
    await lock.release();
    throw error;
  }
}

async function startChecked(config: Readonly<Config>, options: GatewayOptions, checked: Preflight): Promise<RunningGateway> {
  const { logger } = options;
  if (checked.creates.tls) await ensureTlsFiles(config, options);
  else warnIfCaKeyInCertFolder(config, logger);
  if (checked.creates.tokenKey) {
    await ensureTokenSigningKey(config.tokenKey, config.tokenCert);
    logger.info({ key: config.tokenKey, cert: config.tokenCert }, 'created token signing key');
  }
  if (checked.creates.htpasswd) await ensureUsers(config, options);

  const tokens = new TokenAuthority({
    privateKeyPem: readFileSync(config.tokenKey, 'utf8'),
    certificatePem: readFileSync(config.tokenCert, 'utf8'),
    issuer: config.tokenIssuer,
    service: config.service,
    ttlSeconds: config.tokenTtlSeconds,
  });
  const files = await loadGatewayFiles(config, logger);
  const { users, ciTokens, rules } = files;
  const checker = new PasswordChecker();
  const authenticator = new Authenticator(users, checker, { cacheTtlMs: config.basicCacheSeconds * 1000 });
  const logins = { authenticator, users, ciTokens, throttle: new LoginThrottle() };

  const registry = checked.registryBinary === undefined ? undefined : await startEmbeddedRegistry(config, options, checked.registryBinary);
  const upstreamUrls = registry ? [new URL(registry.url)] : config.upstreams;
  const pool = new UpstreamPool(upstreamUrls, { logger });
  const proxy = createRegistryProxy({ upstreams: pool, logger, publicHost: publicHostResolver(config), perClient: config.upstreamPerClient, bodyIdleMs: config.bodyIdleSeconds * 1000 });

  const app = createApp({ config, logger, tokens, logins, authorizer: rules, proxy, upstreams: pool, upstreamReady: () => pool.checkAll() });
  let server;
  try {
    server = await startHttpsServer(app, {
      cert: readFileSync(config.tlsCert),
      key: readFileSync(config.tlsKey),
      listen: config.listen,
      redirectHost: (hostHeader) => publicHostFor(config, hostHeader),
      onPlainHttp: (answer) => logger.info(answer, 'plain HTTP request on the TLS port'),
    });
  } catch (error) {
    pool.close();
    await registry?.stop();
    await checker.close();
    throw error;
  }

  const stopWatching = files.watch();

  const host = config.listen.host === '0.0.0.0' || config.listen.host === '::' ? '127.0.0.1' : config.listen.host;
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${server.address.port}`;
  logger.info({ url, upstreams: upstreamUrls.map((u) => u.origin), auth: config.auth, service: config.service, embedded: registry !== undefined }, 'gateway listening');

  let closed: Promise<void> | undefined;
  return {
    url,
    port: server.address.port,
    upstreams: upstreamUrls,
    async reload() {
      await files.reload();
      try {
        server.server.setSecureContext({ ...TLS_OPTIONS, cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey) });
        logger.info({ cert: config.tlsCert }, 'TLS certificate reloaded');
      } catch (error) {
        logger.error({ err: (error as Error).message }, 'TLS certificate reload failed; keeping the previous one');
      }
    },
    close() {
      closed ??= (async () => {
        stopWatching();
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
