// The files a running gateway watches (htpasswd, CI tokens, access rules): loaded together at start-up, watched and reloaded together.

import { CiTokenStore } from '../auth/ci-token-store.js';
import type { Config } from './config.js';
import { UserStore } from '../auth/htpasswd.js';
import { CurrentRules } from '../access/policy.js';
import type { FileLog, ReloadListener } from './watched-file.js';
import { signInProviderNames } from '../ui/sign-in-setup.js';

export interface GatewayFiles {
  users: UserStore;
  ciTokens: CiTokenStore;
  rules: CurrentRules;
  /** Re-reads every file (SIGHUP); a file that is missing or broken keeps its last good content. */
  reload(): Promise<void>;
  /** Reloads each file when it changes; returns the function that stops watching. */
  watch(): () => void;
  /** Tells `listener` of every reload of any of the files, taken or refused. */
  onReload(listener: ReloadListener): void;
}

/** Start-up: throws a ConfigError naming the setting, the file, its line and the reason. */
export async function loadGatewayFiles(config: Readonly<Config>, logger: FileLog): Promise<GatewayFiles> {
  const users = await UserStore.load(config.htpasswd, { logger });
  const ciTokens = await CiTokenStore.load(config.ciTokensFile, { logger, users, signInProviders: signInProviderNames(config.providers) });
  const rules = await CurrentRules.load(config.accessFile, { logger, required: config.accessFileRequired });
  const all = [users, ciTokens, rules];
  return {
    users,
    ciTokens,
    rules,
    async reload() {
      await Promise.all(all.map((file) => file.reload()));
    },
    onReload(listener) {
      for (const file of all) file.onReload(listener);
    },
    watch() {
      const stops = all.map((file) => file.watch());
      return () => {
        for (const stop of stops) stop();
      };
    },
  };
}
