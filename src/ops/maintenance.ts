// Read-only maintenance in a running gateway: watches the switch file, refuses writes while it is on, counts writes in flight and reports both beside the file.

import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';
import type { GateLocals } from '../access/gate.js';
import { WatchedFile, type ContentSummary, type FileLog } from '../config/watched-file.js';
import { RegistryError } from '../errors.js';
import { heartbeatMs, parseMaintenanceState, reportFile, writeReport, type GatewayReport, type MaintenanceState } from './maintenance-file.js';

/** Seconds a refused client is told to wait (Retry-After). */
export const maintenanceRetryAfterSeconds = 60;

/** The switch file as a watched file: missing at start is off; unreadable or broken later keeps the state in force. */
class MaintenanceSwitchFile extends WatchedFile<MaintenanceState> {
  readonly #onChange: () => void;

  constructor(file: string, logger: FileLog, onChange: () => void) {
    super(file, { label: 'maintenance file', holds: 'maintenance state', setting: 'maintenance_file' }, { logger });
    this.#onChange = onChange;
  }

  get state(): MaintenanceState {
    return this.content;
  }

  protected parse(text: string): MaintenanceState {
    return parseMaintenanceState(text);
  }

  protected contentWhenMissing(): MaintenanceState {
    return { on: false };
  }

  protected summarize(content: MaintenanceState): ContentSummary {
    return { fields: { maintenance: content.on, ...(content.by ? { by: content.by } : {}), ...(content.since ? { since: content.since } : {}) } };
  }

  override async reload(): Promise<boolean> {
    const changed = await super.reload();
    if (changed) this.#onChange();
    return changed;
  }
}

export interface MaintenanceStatus {
  on: boolean;
  since?: string;
  by?: string;
  reason?: string;
  /** Requests that may write, answered by this gateway now. */
  writesInFlight: number;
}

export interface MaintenanceModeOptions {
  file: string;
  logger: Logger;
  /** Hears every switch this gateway notices (the event bus). */
  onSwitch?(state: MaintenanceState): void;
  /** Hears each new state of the switch file (to pass on to gateways that do not share it). */
  onFileChange?(state: MaintenanceState): void;
  /** How often the report is rewritten while nothing changes (tests shorten it). */
  heartbeatMs?: number;
}

/**
 * The maintenance state of one gateway. start() writes this gateway's report before it first reads
 * the switch, so a `gateway gc` that lists the reports after switching either sees this gateway (and
 * waits for it) or this gateway reads the switch after it was made (and starts in maintenance).
 */
export class MaintenanceMode {
  readonly #options: MaintenanceModeOptions;
  readonly #switch: MaintenanceSwitchFile;
  readonly #reportFile: string;
  readonly #base: Pick<GatewayReport, 'host' | 'pid' | 'instance' | 'startedAt'>;
  #inForce: MaintenanceState | undefined;
  /** The state other gateways passed on (shared state); in force when it was switched after the file's. */
  #offered: MaintenanceState | undefined;
  #inFlight = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopWatching: (() => void) | undefined;
  #writing: Promise<void> = Promise.resolve();
  #pending = false;
  #reportFailure: string | undefined;
  #stopped = false;

  constructor(options: MaintenanceModeOptions) {
    this.#options = options;
    this.#switch = new MaintenanceSwitchFile(options.file, options.logger, () => {
      this.#adopt();
      options.onFileChange?.(this.#switch.state);
    });
    this.#base = { host: os.hostname(), pid: process.pid, instance: randomBytes(6).toString('hex'), startedAt: new Date().toISOString() };
    this.#reportFile = reportFile(options.file, this.#base.host, this.#base.pid);
  }

  /** Reports, reads the switch (a broken file stops the start with a ConfigError), reports again, then watches. */
  async start(): Promise<void> {
    await this.#report();
    await this.#switch.load();
    this.#adopt();
    await this.#writing;
    this.#stopWatching = this.#switch.watch();
    this.#timer = setInterval(() => this.#report(), this.#options.heartbeatMs ?? heartbeatMs);
    this.#timer.unref();
  }

  get on(): boolean {
    return this.#inForce?.on === true;
  }

  status(): MaintenanceStatus {
    const state = this.#inForce ?? { on: false };
    return {
      on: state.on,
      ...(state.since ? { since: state.since } : {}),
      ...(state.by ? { by: state.by } : {}),
      ...(state.reason ? { reason: state.reason } : {}),
      writesInFlight: this.#inFlight,
    };
  }

  /**
   * Lets a write through (counted until its response ends) or, in maintenance, refuses it: false.
   * Checked and counted in one step, so no write slips between a switch and the count reported.
   */
  admitWrite(res: Response): boolean {
    const done = this.admit();
    if (done === undefined) return false;
    // One listener more than the proxy's own streams add: raise the limit by it, not past it.
    res.setMaxListeners(res.getMaxListeners() + 1);
    res.once('close', done);
    return true;
  }

  /** admitWrite for a write that is no proxied response (a web UI delete): counted until the returned function is called; undefined in maintenance. */
  admit(): (() => void) | undefined {
    if (this.on) return undefined;
    this.#inFlight += 1;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#inFlight -= 1;
      // Only a gateway in maintenance is being waited for; otherwise the heartbeat carries the count.
      if (this.on) this.#report();
    };
  }

  /** What the switch file says (whatever another gateway passed on). */
  get fileState(): MaintenanceState {
    return this.#switch.state;
  }

  /** A state another gateway passed on: in force when it was switched later than the file's state. */
  offer(state: MaintenanceState): void {
    this.#offered = state;
    if (this.#inForce !== undefined) this.#adopt();
  }

  /** Re-reads the switch now (what the watcher does on a change); true when a new state is in force. */
  reload(): Promise<boolean> {
    return this.#switch.reload();
  }

  /** Stops watching and removes this gateway's report. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopWatching?.();
    clearInterval(this.#timer);
    await this.#writing;
    await rm(this.#reportFile, { force: true }).catch(() => undefined);
  }

  #adopt(): void {
    const next = latestSwitch(this.#switch.state, this.#offered);
    const previous = this.#inForce;
    this.#inForce = next;
    if (previous !== undefined && previous.on === next.on && previous.id === next.id) return;
    if (previous !== undefined || next.on) {
      const fields = { file: this.#options.file, by: next.by, since: next.since, reason: next.reason, writesInFlight: this.#inFlight };
      if (next.on) this.#options.logger.warn(fields, 'read-only maintenance is on: writes get 503 until it ends, pulls go on');
      else this.#options.logger.info(fields, 'read-only maintenance is off: writes are accepted again');
      this.#options.onSwitch?.(next);
    }
    this.#report();
  }

  /** Rewrites the report; writes never overlap, and a change during a write is written right after it. */
  #report(): Promise<void> {
    if (this.#stopped) return this.#writing;
    if (this.#pending) return this.#writing;
    this.#pending = true;
    this.#writing = this.#writing.then(async () => {
      this.#pending = false;
      if (this.#stopped) return;
      const state = this.#inForce;
      const report: GatewayReport = {
        ...this.#base,
        heartbeatAt: new Date().toISOString(),
        maintenance: { on: state?.on === true, id: state?.on ? (state.id ?? null) : null },
        writesInFlight: this.#inFlight,
      };
      try {
        await writeReport(this.#options.file, report);
        if (this.#reportFailure !== undefined) this.#options.logger.info({ file: this.#reportFile }, 'maintenance report written again');
        this.#reportFailure = undefined;
      } catch (error) {
        const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
        if (reason !== this.#reportFailure) {
          this.#options.logger.warn(
            { file: this.#reportFile, err: reason },
            'cannot write the maintenance report: `gateway gc` cannot see this gateway and will not wait for its writes; make the folder writable',
          );
        }
        this.#reportFailure = reason;
      }
    });
    return this.#writing;
  }
}

/** The state switched last (by `since`); the file's when neither says, or both say the same time. */
export function latestSwitch(file: MaintenanceState, offered: MaintenanceState | undefined): MaintenanceState {
  if (offered?.since === undefined) return file;
  if (file.since === undefined) return offered;
  return Date.parse(offered.since) > Date.parse(file.since) ? offered : file;
}

const reads = new Set(['GET', 'HEAD']);

/**
 * After the /v2/ gate, before the forwarder: a write (anything but GET and HEAD) in maintenance gets
 * 503 UNAVAILABLE with Retry-After; every other write is counted while it runs.
 */
export function createMaintenanceGuard(mode: MaintenanceMode) {
  return function maintenanceGuard(req: Request, res: Response, next: NextFunction): void {
    const route = (res.locals as Partial<GateLocals>).route;
    if (route === undefined || reads.has(req.method)) return next();
    if (!mode.admitWrite(res)) {
      // Clients print the status line of a 5xx, not its body (docker, containerd, containers/image): the reason phrase says why too.
      res.statusMessage = 'Service Unavailable - registry in read-only maintenance, try again later';
      const { since, reason } = mode.status();
      const why = reason ? ` (${reason})` : '';
      throw new RegistryError(
        'UNAVAILABLE',
        `the registry is in read-only maintenance${why} since ${since ?? 'just now'}: pulls work, pushes and deletes are refused until it ends; try again later`,
        { maintenance: true, ...(since ? { since } : {}) },
      ).withHeader('Retry-After', String(maintenanceRetryAfterSeconds));
    }
    next();
  };
}
