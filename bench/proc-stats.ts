// CPU seconds and peak memory of process trees from /proc: figures that hold up on a busy machine, unlike wall-clock time.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

/** Linux reports process CPU times in clock ticks of 1/100 s. */
const clockTicksPerSecond = 100;

/** The fields of /proc/PID/stat after the command name (which may hold spaces), 0-based from field 3. */
function statFields(pid: number | 'self'): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** `pid` and every process below it (cluster workers, an embedded registry), found through their parents. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const parent = Number(statFields(Number(entry))?.[1]);
    if (!Number.isInteger(parent)) continue;
    const list = children.get(parent) ?? [];
    list.push(Number(entry));
    children.set(parent, list);
  }
  const tree: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const next = queue.shift()!;
    tree.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return tree;
}

/** User plus system CPU seconds of one process, or undefined once it is gone. */
export function cpuSecondsOf(pid: number): number | undefined {
  const fields = statFields(pid);
  return fields ? (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond : undefined;
}

/** CPU seconds of this process's finished children (skopeo, curl once they exited). */
export function reapedChildrenCpuSeconds(): number | undefined {
  const fields = statFields('self');
  return fields ? (Number(fields[13]) + Number(fields[14])) / clockTicksPerSecond : undefined;
}

/** Summed CPU seconds of a set of process trees, keyed by pid so a process that exits mid-way is not lost. */
export class CpuMeter {
  readonly #roots: number[];
  readonly #start = new Map<number, number>();
  readonly #last = new Map<number, number>();

  constructor(roots: (number | undefined)[]) {
    this.#roots = roots.filter((pid): pid is number => pid !== undefined);
    this.#sample(this.#start);
  }

  #sample(into: Map<number, number>): void {
    for (const root of this.#roots) {
      for (const pid of processTree(root)) {
        const seconds = cpuSecondsOf(pid);
        if (seconds !== undefined) into.set(pid, seconds);
      }
    }
  }

  /** CPU seconds used since the meter was made (processes started meanwhile count in full). */
  read(): number {
    this.#sample(this.#last);
    let total = 0;
    for (const [pid, seconds] of this.#last) total += seconds - (this.#start.get(pid) ?? 0);
    return total;
  }
}

function statusField(pid: number, name: string): number | undefined {
  try {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Peak resident memory (MiB) of each process of some trees over a stretch of time. Linux resets a
 * process's peak (VmHWM) when 5 is written to its clear_refs; where that is refused, the current
 * RSS is sampled every 50 ms instead.
 */
export class PeakRss {
  readonly #roots: number[];
  readonly #sampled = new Map<number, number>();
  #timer: NodeJS.Timeout | undefined;
  #resettable = true;

  constructor(roots: (number | undefined)[]) {
    this.#roots = roots.filter((pid): pid is number => pid !== undefined);
  }

  #pids(): number[] {
    return this.#roots.flatMap((root) => processTree(root));
  }

  /** Starts a stretch: peaks are reset (or sampling starts). */
  start(): this {
    for (const pid of this.#pids()) {
      try {
        writeFileSync(`/proc/${pid}/clear_refs`, '5');
      } catch {
        this.#resettable = false;
      }
    }
    if (!this.#resettable) {
      this.#timer = setInterval(() => {
        for (const pid of this.#pids()) {
          const rss = statusField(pid, 'VmRSS');
          if (rss !== undefined) this.#sampled.set(pid, Math.max(this.#sampled.get(pid) ?? 0, rss));
        }
      }, 50);
      this.#timer.unref();
    }
    return this;
  }

  /** Ends the stretch: the peak of each process (the root first), in MiB, rounded. */
  stop(): number[] {
    if (this.#timer) clearInterval(this.#timer);
    const peaks: number[] = [];
    for (const pid of this.#pids()) {
      const peak = this.#resettable ? statusField(pid, 'VmHWM') : this.#sampled.get(pid);
      if (peak !== undefined) peaks.push(Math.round(peak));
    }
    return peaks;
  }
}
