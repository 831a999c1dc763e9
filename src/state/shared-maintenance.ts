// Maintenance through the shared state: each gateway passes on what its switch file says, and takes what others passed on when it was switched later.

import type { Logger } from 'pino';
import { parseMaintenanceState, type MaintenanceState } from '../ops/maintenance-file.js';
import { latestSwitch, type MaintenanceMode } from '../ops/maintenance.js';
import type { SharedState } from './shared-state.js';

/** The shared value holding the last switch any gateway passed on (JSON, as in the switch file). */
export const maintenanceKey = 'maintenance';

/** The state a shared value or notice holds, or undefined when it is none (it is checked as the switch file is). */
function stateOf(text: string | undefined, logger: Logger): MaintenanceState | undefined {
  if (text === undefined) return undefined;
  try {
    return parseMaintenanceState(text);
  } catch (error) {
    logger.warn({ err: (error as Error).message }, 'ignored a maintenance state from the shared state that is not one');
    return undefined;
  }
}

/**
 * Keeps one gateway's maintenance in step with the others'. The shared value holds the last switch
 * passed on; a notice on the "maintenance" channel carries each new one. The state in force is
 * whichever was switched last, the file's or the shared one, so a gateway whose file was switched
 * while the shared state was away passes its switch on when it is back, and an older switch never
 * wins over a newer one. Without the shared state, the file alone decides, as always.
 */
export class SharedMaintenance {
  readonly #shared: SharedState;
  readonly #logger: Logger;
  #mode: MaintenanceMode | undefined;
  #stop: (() => void) | undefined;

  constructor(shared: SharedState, logger: Logger) {
    this.#shared = shared;
    this.#logger = logger;
  }

  /** Starts listening, then agrees with the shared value (call after the mode has started). */
  async attach(mode: MaintenanceMode): Promise<void> {
    this.#mode = mode;
    this.#stop = this.#shared.subscribe('maintenance', (message) => {
      const state = stateOf(message, this.#logger);
      if (state !== undefined) mode.offer(state);
    });
    await this.reconcile();
  }

  /** The switch file changed: passes its state on when it is newer than the shared one. */
  fileChanged(state: MaintenanceState): void {
    void this.reconcile(state);
  }

  /**
   * Reads the shared value: takes it when it was switched after the file's state, else writes the
   * file's state there and announces it. Run at start, on each change of the file, and whenever the
   * shared state comes back. Does nothing when the shared state does not answer.
   */
  async reconcile(fileState: MaintenanceState | undefined = this.#mode?.fileState): Promise<void> {
    const mode = this.#mode;
    if (mode === undefined || fileState === undefined) return;
    try {
      const shared = stateOf(await this.#shared.get(maintenanceKey), this.#logger);
      if (shared !== undefined && latestSwitch(fileState, shared) === shared) {
        mode.offer(shared);
        return;
      }
      // A file that never said anything (missing, no time of switch) has nothing to pass on.
      if (fileState.since === undefined || (shared !== undefined && shared.since === fileState.since && shared.id === fileState.id)) return;
      const text = JSON.stringify(fileState);
      await this.#shared.set(maintenanceKey, text);
      await this.#shared.publish('maintenance', text);
    } catch {
      // Away: the file decides here, and this is tried again when the shared state comes back.
    }
  }

  stop(): void {
    this.#stop?.();
  }
}
