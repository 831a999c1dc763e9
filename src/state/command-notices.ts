// For `gateway` commands: tells the running gateways through Redis (when redis_url is set) what a command changed, without waiting on a Redis that is away.

import { readFileSync } from 'node:fs';
import { loadConfig, type Config } from '../config/config.js';
import type { MaintenanceState } from '../ops/maintenance-file.js';
import { RedisSharedState, redisLocation } from './redis-state.js';
import { revocationNotice } from './revocations.js';
import { maintenanceKey } from './shared-maintenance.js';
import type { SharedState } from './shared-state.js';

/** How long a command waits for Redis before it leaves the news to the files. */
const commandWaitMs = 3_000;

/**
 * Connects to the deployment's Redis, runs `send`, disconnects. Returns a line for the operator, or
 * undefined when no Redis is set. Never fails: what the command changed is in the files already,
 * and every gateway reads them (within a second when they share them).
 */
async function tellThroughRedis(config: Readonly<Config> | string, send: (shared: SharedState) => Promise<void>): Promise<string | undefined> {
  const unsent = (why: string) => `warning: the gateways were not told through Redis (${why}); they read the files within a second`;
  if (typeof config === 'string') return unsent(config);
  if (config.redis === undefined) return undefined;
  const where = redisLocation(config.redis.url);
  let password: string | undefined;
  try {
    if (config.redis.passwordFile !== undefined) password = readFileSync(config.redis.passwordFile, 'utf8').replace(/\r?\n$/, '');
  } catch (error) {
    return unsent(`cannot read ${config.redis.passwordFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const redis = new RedisSharedState({ url: config.redis.url, ...(password === undefined ? {} : { password }), prefix: config.redis.prefix });
  try {
    await redis.start(commandWaitMs);
    await send(redis);
    return `gateways sharing ${where} were told at once`;
  } catch (error) {
    return unsent(`${where}: ${(error as Error).message}`);
  } finally {
    await redis.close();
  }
}

/** The settings from the variables (the token commands take no --config), or the reason they do not load. */
function settingsFromEnvironment(env: NodeJS.ProcessEnv, cwd: string): Readonly<Config> | string {
  try {
    return loadConfig({ env, cwd }).config;
  } catch (error) {
    return (error as Error).message;
  }
}

/** `gateway token revoke`: every gateway on the deployment's Redis refuses the token at once. */
export async function announceRevocationFromCommand(id: string, env: NodeJS.ProcessEnv, cwd: string): Promise<string | undefined> {
  if (!env.GATEWAY_REDIS_URL) return undefined;
  return tellThroughRedis(settingsFromEnvironment(env, cwd), (shared) => shared.publish('revocations', revocationNotice(id)));
}

/** `gateway maintenance on|off`: the switch just made, passed on to every gateway, also those that do not share the file. */
export async function announceMaintenanceFromCommand(config: Readonly<Config>, state: MaintenanceState): Promise<string | undefined> {
  const text = JSON.stringify(state);
  return tellThroughRedis(config, async (shared) => {
    await shared.set(maintenanceKey, text);
    await shared.publish('maintenance', text);
  });
}
