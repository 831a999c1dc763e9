// Waiting, bounded, until every live gateway reports the maintenance period in force and no write in flight.

import { setTimeout as delay } from 'node:timers/promises';
import { gatewayName, liveReports, type ListedReport } from './maintenance-file.js';

export interface DrainOptions {
  maintenanceFile: string;
  /** The id of the maintenance period every gateway must report. */
  id: string;
  timeoutMs: number;
  /** Hears what is still awaited whenever that changes. */
  progress?(line: string): void;
  signal?: AbortSignal;
  pollMs?: number;
}

export interface Drained {
  /** The gateways that reported, each with maintenance on and nothing in flight. */
  gateways: ListedReport[];
}

/** Why a drain gave up: the gateways still awaited, in words. */
export class DrainTimeout extends Error {
  override readonly name = 'DrainTimeout';
}

function pendingOf(reports: ListedReport[], id: string): string[] {
  return reports.flatMap(({ report }) => {
    if (report.maintenance.id !== id) return [`${gatewayName(report)} has not seen the switch yet`];
    if (report.writesInFlight > 0) return [`${gatewayName(report)} has ${report.writesInFlight} write${report.writesInFlight === 1 ? '' : 's'} in flight`];
    return [];
  });
}

/**
 * Resolves once every gateway with a live report has seen maintenance period `id` and has no write
 * in flight; rejects with DrainTimeout after `timeoutMs`, naming who is still busy. Reports are
 * listed anew on every look, so a gateway that starts meanwhile is waited for as well.
 */
export async function waitForWritesToDrain(options: DrainOptions): Promise<Drained> {
  const deadline = Date.now() + options.timeoutMs;
  const pollMs = options.pollMs ?? 200;
  let said = '';
  for (;;) {
    options.signal?.throwIfAborted();
    const { live, problems } = await liveReports(options.maintenanceFile);
    const pending = pendingOf(live, options.id);
    const line = [...pending, ...problems].join('; ');
    if (pending.length === 0) return { gateways: live };
    if (line !== said) options.progress?.(`waiting: ${line}`);
    said = line;
    if (Date.now() >= deadline) {
      throw new DrainTimeout(`gave up after ${Math.round(options.timeoutMs / 1000)} s waiting for writes in flight to finish: ${line}`);
    }
    await delay(pollMs, undefined, options.signal ? { signal: options.signal } : undefined);
  }
}
