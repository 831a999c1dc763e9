// The maintenance switch file and the gateways' reports beside it: formats, reading, switching, and which reports belong to live gateways.

import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { editFileExclusively, isMissing, writeFileAtomically } from '../config/files.js';

/** What the switch file says. `id` names one period of maintenance, so reports can say which one they saw. */
export interface MaintenanceState {
  on: boolean;
  id?: string;
  /** ISO time of the last switch. */
  since?: string;
  /** Who switched: "gateway gc (user@host)", "gateway maintenance on (user@host)". */
  by?: string;
  reason?: string;
}

/** One line of printable text: what the file says reaches logs, terminals and clients' error messages. */
const printable = /^[^\x00-\x1f\x7f]*$/;

export const maintenanceStateSchema = z.strictObject({
  on: z.boolean('"on" must be true or false'),
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, '"id" must be 1 to 64 of A-Z a-z 0-9 _ -').optional(),
  since: z.string().regex(printable, '"since" must be printable text').max(64).optional(),
  by: z.string().regex(printable, '"by" must be printable text').max(256).optional(),
  reason: z.string().regex(printable, '"reason" must be printable text').max(512).optional(),
});

/** Parses the switch file's text; throws with the reason (the caller names the file). */
export function parseMaintenanceState(text: string): MaintenanceState {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new Error(`not JSON (${(error as Error).message}); write it with \`gateway maintenance on|off\``);
  }
  const parsed = maintenanceStateSchema.safeParse(data);
  if (!parsed.success) throw new Error(`${parsed.error.issues[0]?.message ?? 'not a maintenance state'}; write it with \`gateway maintenance on|off\``);
  if (parsed.data.on && parsed.data.id === undefined) throw new Error('"on": true needs an "id"; write it with `gateway maintenance on`');
  return parsed.data;
}

/** The state in the file now; a missing file is off. Throws when the file exists but cannot be read or parsed. */
export async function readMaintenanceState(file: string): Promise<MaintenanceState> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (isMissing(error)) return { on: false };
    throw new Error(`cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  try {
    return parseMaintenanceState(text);
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`);
  }
}

/** Who runs this command, for the file's `by`. */
export function operator(command: string): string {
  let user = 'unknown';
  try {
    user = os.userInfo().username;
  } catch {
    // No passwd entry (a container's arbitrary uid): the uid will do.
    user = String(process.getuid?.() ?? 'unknown');
  }
  return `${command} (${user}@${os.hostname()})`;
}

export type SwitchOutcome = { changed: true; state: MaintenanceState } | { changed: false; state: MaintenanceState };

/**
 * Switches maintenance on, unless it is on already (then the state in force is returned, unchanged).
 * Read-modify-write under the file's lock, so two switches never interleave.
 */
export function switchOn(file: string, by: string, reason: string): Promise<SwitchOutcome> {
  return editFileExclusively(file, async (target) => {
    const current = await readMaintenanceState(target);
    if (current.on) return { changed: false, state: current };
    const state: MaintenanceState = { on: true, id: randomBytes(9).toString('base64url'), since: new Date().toISOString(), by, reason };
    await writeFileAtomically(target, `${JSON.stringify(state, null, 2)}\n`, 0o644);
    return { changed: true, state };
  });
}

/**
 * Switches maintenance off, writing the off state whatever was there (missing, unreadable: the
 * operator asked for off). With `onlyId`, only the period with that id is ended: a switch made
 * since by someone else stays.
 */
export function switchOff(file: string, by: string, onlyId?: string): Promise<SwitchOutcome> {
  return editFileExclusively(file, async (target) => {
    const current = await readMaintenanceState(target).catch((): MaintenanceState => ({ on: true, id: 'unreadable' }));
    if (onlyId !== undefined && (!current.on || current.id !== onlyId)) return { changed: false, state: current };
    // Written even when already off: a gateway that kept maintenance on after the file went missing reads this one.
    const state: MaintenanceState = { on: false, since: new Date().toISOString(), by };
    await writeFileAtomically(target, `${JSON.stringify(state, null, 2)}\n`, 0o644);
    return { changed: current.on, state };
  });
}

// ---------------------------------------------------------------------------------------------
// Reports: each running gateway keeps FILE.d/HOST-PID.json up to date.

/** A gateway's report: alive (heartbeat), what maintenance it has in force, and its writes in flight. */
export interface GatewayReport {
  host: string;
  pid: number;
  /** Random per process: tells a restarted gateway with the same pid from the old one. */
  instance: string;
  startedAt: string;
  heartbeatAt: string;
  /** The maintenance period in force at this gateway (its id), or null while it is off or not yet read. */
  maintenance: { on: boolean; id: string | null };
  /** Requests that may write (anything but GET and HEAD) it is answering now. */
  writesInFlight: number;
}

const reportSchema = z.object({
  host: z.string().regex(/^[A-Za-z0-9._-]{1,255}$/),
  pid: z.number().int().nonnegative(),
  instance: z.string().max(64),
  startedAt: z.string().max(64),
  heartbeatAt: z.string().max(64),
  maintenance: z.object({ on: z.boolean(), id: z.string().max(64).nullable() }),
  writesInFlight: z.number().int().nonnegative(),
});

/** How often a gateway rewrites its report, and when a report no longer counts as a live gateway's. */
export const heartbeatMs = 2_000;
export const staleAfterMs = 15_000;

export function reportFolder(maintenanceFile: string): string {
  return `${maintenanceFile}.d`;
}

export function reportFile(maintenanceFile: string, host: string, pid: number): string {
  return path.join(reportFolder(maintenanceFile), `${host.replace(/[^A-Za-z0-9.-]/g, '_')}-${pid}.json`);
}

export async function writeReport(maintenanceFile: string, report: GatewayReport): Promise<void> {
  await writeFileAtomically(reportFile(maintenanceFile, report.host, report.pid), `${JSON.stringify(report)}\n`, 0o644);
}

export interface ListedReport {
  file: string;
  report: GatewayReport;
  /** Milliseconds since the file was last written (by this machine's clock). */
  ageMs: number;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The reports of live gateways. A report not rewritten for staleAfterMs, or from a process of this
 * host that no longer exists, is left out (and, for a dead process of this host, removed).
 * An unreadable or malformed report is left out too; `problems` names it.
 */
export async function liveReports(maintenanceFile: string, now = Date.now()): Promise<{ live: ListedReport[]; problems: string[] }> {
  const folder = reportFolder(maintenanceFile);
  let names: string[];
  try {
    names = (await readdir(folder)).filter((name) => name.endsWith('.json') && !name.startsWith('.'));
  } catch (error) {
    if (isMissing(error)) return { live: [], problems: [] };
    throw new Error(`cannot list ${folder} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  const live: ListedReport[] = [];
  const problems: string[] = [];
  const host = os.hostname();
  for (const name of names) {
    const file = path.join(folder, name);
    try {
      const [text, info] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
      const parsed = reportSchema.safeParse(JSON.parse(text));
      if (!parsed.success) {
        problems.push(`${file}: not a gateway report`);
        continue;
      }
      const report = parsed.data;
      const ageMs = Math.max(0, now - info.mtimeMs);
      if (report.host === host && report.pid !== process.pid && !processAlive(report.pid)) {
        await rm(file, { force: true });
        continue;
      }
      if (ageMs > staleAfterMs) continue;
      live.push({ file, report, ageMs });
    } catch (error) {
      // Replaced or removed while being read: the next look sees the new one.
      if (isMissing(error)) continue;
      problems.push(`${file}: ${(error as Error).message}`);
    }
  }
  return { live, problems };
}

/** "host pid 123" for messages. */
export function gatewayName(report: GatewayReport): string {
  return `${report.host} pid ${report.pid}`;
}
