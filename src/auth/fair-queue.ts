// Runs tasks a few at a time, taking turns between sources, so one source's backlog never delays another's next task.

/** Thrown (by the factory the queue was given) for a task the queue will not take. */
export type RefusalFactory = () => Error;

export interface FairQueueOptions {
  /** Tasks running at once, across all sources. */
  concurrency: number;
  /** Tasks one source may have waiting; beyond it, that source's new tasks are refused. */
  maxWaitingPerSource: number;
  /** Tasks waiting across all sources, so memory stays bounded whatever the number of sources. */
  maxWaiting: number;
  refusal: RefusalFactory;
}

interface Job {
  start(): void;
  refuse(error: Error): void;
}

/**
 * Round robin between sources: whenever a slot frees, the source that has waited longest for a
 * turn gets it, whatever the length of its queue. A source alone may use every slot (nothing is kept
 * idle), but a newcomer waits for one turn of each source already waiting, never for their whole
 * backlog. When the whole queue is full, the longest source queue gives up its newest task for a
 * source with fewer waiting, so many sources cannot fill it and lock out one more.
 */
export class FairQueue {
  readonly #concurrency: number;
  readonly #maxWaitingPerSource: number;
  readonly #maxWaiting: number;
  readonly #refusal: RefusalFactory;
  /** Sources with waiting tasks, in turn order: the first is served next, then moves to the back. */
  readonly #lanes = new Map<string, Job[]>();
  #waiting = 0;
  #running = 0;

  constructor(options: FairQueueOptions) {
    this.#concurrency = positiveInteger('concurrency', options.concurrency);
    this.#maxWaitingPerSource = nonNegativeInteger('maxWaitingPerSource', options.maxWaitingPerSource);
    this.#maxWaiting = nonNegativeInteger('maxWaiting', options.maxWaiting);
    this.#refusal = options.refusal;
  }

  /** Tasks waiting for a slot, across all sources. */
  get waiting(): number {
    return this.#waiting;
  }

  get running(): number {
    return this.#running;
  }

  /** Runs the task in `source`'s turn; rejects with the refusal error when there is no room. */
  run<T>(source: string, task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const job: Job = {
        start: () => {
          this.#running++;
          let settled: Promise<T>;
          try {
            settled = Promise.resolve(task());
          } catch (error) {
            settled = Promise.reject(error);
          }
          // The slot is free before the caller hears the outcome, so what it does next sees it free.
          const done = () => {
            this.#running--;
            this.#dispatch();
          };
          settled.then(
            (value) => {
              done();
              resolve(value);
            },
            (error: unknown) => {
              done();
              reject(error);
            },
          );
        },
        refuse: reject,
      };
      if (this.#running < this.#concurrency && this.#waiting === 0) {
        job.start();
        return;
      }
      if (!this.#makeRoom(source)) {
        reject(this.#refusal());
        return;
      }
      const lane = this.#lanes.get(source);
      if (lane === undefined) this.#lanes.set(source, [job]);
      else lane.push(job);
      this.#waiting++;
      this.#dispatch();
    });
  }

  /** Whether a task of `source` may wait, pushing out another source's newest task if that is fair. */
  #makeRoom(source: string): boolean {
    const own = this.#lanes.get(source)?.length ?? 0;
    if (own >= this.#maxWaitingPerSource) return false;
    if (this.#waiting < this.#maxWaiting) return true;
    let longest: Job[] | undefined;
    for (const lane of this.#lanes.values()) if (longest === undefined || lane.length > longest.length) longest = lane;
    // Only a strictly longer queue gives way, so two sources never take turns pushing each other out.
    if (longest === undefined || longest.length <= own + 1) return false;
    const pushedOut = longest.pop()!;
    this.#waiting--;
    pushedOut.refuse(this.#refusal());
    return true;
  }

  #dispatch(): void {
    while (this.#running < this.#concurrency) {
      const next = this.#lanes.entries().next();
      if (next.done) return;
      const [source, lane] = next.value;
      const job = lane.shift()!;
      this.#waiting--;
      // Served: the source goes to the back of the turn order, or leaves it with nothing waiting.
      this.#lanes.delete(source);
      if (lane.length > 0) this.#lanes.set(source, lane);
      job.start();
    }
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer`);
  return value;
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer`);
  return value;
}
