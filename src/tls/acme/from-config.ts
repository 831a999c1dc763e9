// Builds the ACME manager from the gateway's settings: certs/acme/ beside tls_cert, the extra CA read once.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../../config/config.js';
import { settingName } from '../../config/settings.js';
import { ConfigError } from '../../errors.js';
import type { AcmeChallenges } from './challenges.js';
import { AcmeManager, type AcmeManagerOptions } from './manager.js';
import { acmePaths } from './store.js';

export interface AcmeWiring {
  logger: Logger;
  challenges: AcmeChallenges;
  install(certPem: string, keyPem: string): void;
  /** Test hooks: first retry delay and its ceiling. */
  retryMs?: number;
  maxRetryMs?: number;
  now?(): number;
  /** Hears that the manager's status may have changed. */
  onChange?(): void;
}

/** The extra CA bundle for the ACME server, or a ConfigError naming acme_ca. */
export function readAcmeCa(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    const pem = readFileSync(file, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
    return pem;
  } catch (error) {
    throw new ConfigError(settingName('acme_ca'), `cannot use ${file}: ${(error as Error).message}`);
  }
}

export function acmeManagerFor(config: Readonly<Config>, wiring: AcmeWiring): AcmeManager | undefined {
  const acme = config.acme;
  if (!acme) return undefined;
  const options: AcmeManagerOptions = {
    directoryUrl: acme.directoryUrl,
    domains: acme.domains,
    email: acme.email,
    ca: readAcmeCa(acme.caFile),
    challenge: acme.challenge,
    paths: acmePaths(path.dirname(config.tlsCert)),
    challenges: wiring.challenges,
    logger: wiring.logger.child({ component: 'acme' }),
    install: wiring.install,
    retryMs: wiring.retryMs,
    maxRetryMs: wiring.maxRetryMs,
    now: wiring.now,
    onChange: wiring.onChange,
  };
  return new AcmeManager(options);
}
