// Opens the state a gateway shares with others (Redis from redis_url, or one handed in) and wires it to the throttle, the token store and maintenance.

import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { CiTokenStore } from '../auth/ci-token-store.js';
import type { LoginThrottle } from '../auth/throttle.js';
import type { Config } from '../config/config.js';
import { settingName } from '../config/settings.js';
import { ConfigError } from '../errors.js';
import type { MaintenanceState } from '../ops/maintenance-file.js';
import type { MaintenanceMode } from '../ops/maintenance.js';
import { RedisSharedState, redisLocation } from './redis-state.js';
import { shareRevocations } from './revocations.js';
import { SharedMaintenance } from './shared-maintenance.js';
import type { SharedState } from './shared-state.js';
import { SharedLoginThrottle, type Throttle } from './shared-throttle.js';

/** How long a starting gateway waits for Redis before it opens its port anyway (and goes on alone until Redis answers). */
const startWaitMs = 3_000;

export interface SharedStateOptions {
  logger: Logger;
  /** A shared state made elsewhere (a cluster worker's, through its primary); used instead of redis_url. */
  given?: SharedState;
}

/** One gateway's use of the shared state. */
export interface SharedGateway {
  readonly state: SharedState;
  /** The login throttle to use: `local`, with its counts shared. */
  throttle(local: LoginThrottle): Throttle;
  /**
   * After the maintenance mode has started: connects (waiting a little for Redis, never failing),
   * then revocations and maintenance from and to the other gateways.
   */
  attach(parts: { ciTokens: CiTokenStore; maintenance: MaintenanceMode }): Promise<void>;
  /** The switch file changed (MaintenanceModeOptions.onFileChange). */
  maintenanceFileChanged(state: MaintenanceState): void;
  /** For the metric: the backend and whether it answers now. */
  status(): { backend: string; up: boolean };
  close(): Promise<void>;
}

/** The password from redis_password_file, without the trailing newline editors add. */
function readPassword(file: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (error) {
    throw new ConfigError(settingName('redis_password_file'), `cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/**
 * Undefined when nothing is shared (no redis_url, nothing given): the gateway keeps its state to
 * itself, as it always did. Connects nothing yet (attach() does), so a start that fails before leaves nothing open.
 */
export function openSharedState(config: Readonly<Config>, options: SharedStateOptions): SharedGateway | undefined {
  const { logger } = options;
  if (options.given !== undefined) return sharedGateway(options.given, () => true, async () => undefined, logger);
  if (config.redis === undefined) return undefined;
  const where = { redis: redisLocation(config.redis.url), prefix: config.redis.prefix };
  let wasUp = false;
  let onBack: () => void = () => undefined;
  const redis = new RedisSharedState({
    url: config.redis.url,
    ...(config.redis.passwordFile === undefined ? {} : { password: readPassword(config.redis.passwordFile) }),
    prefix: config.redis.prefix,
    onAvailability: (up, reason) => {
      if (up) {
        logger.info(where, wasUp ? 'Redis answers again: login failures, token revocations and maintenance are shared with the other gateways again' : 'Redis answers: login failures, token revocations and maintenance are shared with the other gateways');
        if (wasUp) onBack();
        wasUp = true;
      } else {
        logger.warn({ ...where, err: reason }, 'Redis does not answer: this gateway throttles logins on its own and hears of revocations and maintenance from its files until Redis is back');
      }
    },
  });
  const gateway = sharedGateway(redis, () => redis.up === true, () => redis.start(startWaitMs), logger);
  onBack = () => gateway.reconnected();
  return gateway;
}

function sharedGateway(state: SharedState, up: () => boolean, connect: () => Promise<void>, logger: Logger): SharedGateway & { reconnected(): void } {
  const maintenance = new SharedMaintenance(state, logger);
  let revocations: ReturnType<typeof shareRevocations> | undefined;
  return {
    state,
    throttle: (local) => new SharedLoginThrottle(local, state),
    async attach(parts) {
      await connect();
      revocations = shareRevocations(state, parts.ciTokens, logger);
      parts.ciTokens.onReload((_file, error) => {
        if (error === undefined) revocations?.reloaded();
      });
      await maintenance.attach(parts.maintenance);
    },
    maintenanceFileChanged: (fileState) => maintenance.fileChanged(fileState),
    status: () => ({ backend: state.kind, up: up() }),
    reconnected: () => void maintenance.reconcile(),
    async close() {
      maintenance.stop();
      revocations?.stop();
      await state.close();
    },
  };
}
