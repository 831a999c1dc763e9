// The browse reader's small reads from the registry pool: answers bounded in size, failures sorted into "registry down" and "this part cannot be shown".

import { answerTooLarge, type UpstreamAnswer, type UpstreamFetchOptions, type UpstreamPool } from '../../registry/upstreams.js';
import { RegistryUnavailable } from './model.js';


/** A part of a page that cannot be shown (too large, malformed, not what it claims): said on the page, the rest still shown. */
export class ReadProblem extends Error {
  override readonly name = 'ReadProblem';
}

/** The text a page shows for a part that could not be read: a ReadProblem's own words, or that the registry did not answer. */
export function problemText(error: unknown): string {
  if (error instanceof ReadProblem) return error.message;
  if (error instanceof RegistryUnavailable) return 'The registry did not answer; try again later.';
  return 'This could not be read.';
}

/**
 * One request to the registry pool. An answer over `maxBytes` is cut off unread and becomes a
 * ReadProblem naming `what`; a registry that does not answer becomes RegistryUnavailable.
 */
export async function fetchBounded(upstreams: UpstreamPool, path: string, what: string, options: UpstreamFetchOptions & { maxBytes: number }): Promise<UpstreamAnswer> {
  try {
    return await upstreams.fetch(path, options);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === answerTooLarge) throw new ReadProblem(tooLargeText(what, options.maxBytes));
    throw new RegistryUnavailable(`the registry did not answer (${(error as NodeJS.ErrnoException).code ?? 'request failed'})`);
  }
}

export function tooLargeText(what: string, maxBytes: number): string {
  return `The ${what} is larger than ${formatLimit(maxBytes)}; it is not shown.`;
}

function formatLimit(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/** A registry answer that is neither the content nor "not found": the registry is failing. */
export function unexpected(answer: UpstreamAnswer, what: string): RegistryUnavailable {
  return new RegistryUnavailable(`the registry answered ${answer.status} when reading ${what}`);
}

/** At most `limit` reads at a time for one page view; wrap single reads only (a wrapped read must not wait on another). */
export function limiter(limit: number): <T>(read: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(read: () => Promise<T>): Promise<T> => {
    if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    else active++;
    try {
      return await read();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}
