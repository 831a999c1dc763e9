// What a gateway's first start creates (certificates, token key, first user), and the embedded registry it starts.

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { addUser } from './auth/htpasswd.js';
import type { Config } from './config/config.js';
import type { Preflight } from './config/preflight.js';
import { settingName } from './config/settings.js';
import { CertificateError, ConfigError } from './errors.js';
import type { GatewayOptions } from './gateway.js';
import { RegistryProcess } from './registry/registry-process.js';
import { legacyCaKeyPath } from './tls/ca.js';
import { createCertificates, defaultHosts, ensureTokenSigningKey } from './tls/certs.js';

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

export async function startEmbeddedRegistry(config: Readonly<Config>, options: GatewayOptions, binary: string): Promise<RegistryProcess> {
  const registry = new RegistryProcess({ binary, dataDir: config.dataDir, logger: options.logger.child({ component: 'registry' }), env: options.env });
  await registry.start();
  options.logger.info({ binary, url: registry.url, storage: path.join(config.dataDir, 'registry') }, 'embedded registry started');
  return registry;
}

/** First run: what preflight found missing and may be made (certificates, token key, users); once per start, before anything reads them. */
export async function createFirstRunFiles(config: Readonly<Config>, options: GatewayOptions, checked: Preflight): Promise<void> {
  const { logger } = options;
  if (checked.creates.tls) await ensureTlsFiles(config, options);
  else warnIfCaKeyInCertFolder(config, logger);
  if (checked.creates.tokenKey) {
    await ensureTokenSigningKey(config.tokenKey, config.tokenCert);
    logger.info({ key: config.tokenKey, cert: config.tokenCert }, 'created token signing key');
  }
  if (checked.creates.htpasswd) await ensureUsers(config, options);
}
