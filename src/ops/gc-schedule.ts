// `gc_schedule`: the gateway collects its embedded registry's garbage itself, on a cron schedule, exactly as `gateway gc` would.

import { Cron } from 'croner';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { collectGarbage, type GcReport } from './gc.js';
import { operator } from './maintenance-file.js';
import { describeGcReport } from './gc-report.js';

/** How long a scheduled collection waits for writes in flight before it gives up (and tries at the next time). */
const scheduledWaitMs = 10 * 60_000;

export interface GcSchedule {
  /** Stops the schedule; a run in progress is stopped too (collector killed, maintenance switched off) before this resolves. */
  stop(): Promise<void>;
}

/** Starts the schedule; each run is logged, a failed one too (maintenance is switched off again as `gateway gc` does). */
export function scheduleGarbageCollection(config: Readonly<Config>, schedule: string, logger: Logger, env: NodeJS.ProcessEnv): GcSchedule {
  const log = logger.child({ component: 'gc' });
  const controller = new AbortController();
  const collect = async (): Promise<void> => {
    log.info({ schedule }, 'scheduled garbage collection starts');
    const report: GcReport = await collectGarbage({
      config,
      env,
      dryRun: false,
      deleteUntagged: false,
      waitMs: scheduledWaitMs,
      allowNoGateway: false,
      by: operator('gc_schedule'),
      say: (line) => log.info(line),
      onCollectorLine: (line) => log.debug({ collector: line }, 'garbage-collect'),
      signal: controller.signal,
    });
    log.info({ ...describeGcReport(report).fields }, describeGcReport(report).summary);
  };
  let running: Promise<void> | undefined;
  const job = new Cron(schedule, { protect: true, catch: (error: unknown) => log.error({ err: (error as Error).message }, 'scheduled garbage collection failed') }, () => {
    running = collect().finally(() => {
      running = undefined;
    });
    return running;
  });
  log.info({ schedule, next: job.nextRun()?.toISOString() }, 'garbage collection scheduled');
  return {
    async stop() {
      job.stop();
      controller.abort();
      await running?.catch(() => undefined);
    },
  };
}

/** The schedule `serve` runs, when gc_schedule is set: only for the embedded registry (elsewhere it is logged and ignored). */
export function scheduleFor(config: Readonly<Config>, embedded: boolean, logger: Logger, env: NodeJS.ProcessEnv): GcSchedule | undefined {
  if (config.gcSchedule === undefined) return undefined;
  if (!embedded) {
    logger.warn({ schedule: config.gcSchedule }, 'GATEWAY_GC_SCHEDULE (gc_schedule) applies to the embedded registry only and is ignored: run `gateway gc` from cron where the registry runs');
    return undefined;
  }
  return scheduleGarbageCollection(config, config.gcSchedule, logger, env);
}
