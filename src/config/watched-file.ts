// One owner per watched file: read at start-up, re-read on change or SIGHUP, last good content kept when it goes missing or breaks.

import { unwatchFile, watchFile } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import { settingName, type SettingKey } from './settings.js';

/** The log calls a store makes; a pino Logger is one. */
export interface FileLog {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

const silent: FileLog = { debug() {}, info() {}, warn() {}, error() {} };

export interface WatchedFileOptions {
  logger?: FileLog;
}

export interface FileDescription {
  /** How logs name the file: "htpasswd", "access file", "CI tokens file". */
  label: string;
  /** What the file holds, for "keeping the last good ...": "users", "rules", "tokens". */
  holds: string;
  /** The setting that names the file, for start-up errors. */
  setting: SettingKey;
}

/** What a store says after reading its file: fields for the log line, and warnings to log. */
export interface ContentSummary {
  fields?: Record<string, unknown>;
  warnings?: readonly string[];
}

/** Hears each reload: the file, and the reason when its new content was refused (the last good stays). */
export type ReloadListener = (file: string, error?: string) => void;

type ReadOutcome<T> = { kind: 'ok'; content: T } | { kind: 'missing' } | { kind: 'failed'; reason: string };

/** How often the file is polled; polling (not fs.watch) follows atomic renames and deletion + re-creation. */
const POLL_INTERVAL_MS = 500;
/** Lets a writer that is not atomic (Apache's htpasswd truncates, then writes) finish before the read. */
const SETTLE_MS = 150;

/** What tells one version of a file from another; all zero for a missing file (as fs.watchFile reports it). */
interface Version {
  ino: number;
  mtimeMs: number;
  ctimeMs: number;
  size: number;
  mode: number;
}

const missingVersion: Version = { ino: 0, mtimeMs: 0, ctimeMs: 0, size: 0, mode: 0 };

function versionOf(stats: Version): Version {
  return { ino: stats.ino, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs, size: stats.size, mode: stats.mode };
}

function changed(current: Version, previous: Version): boolean {
  return (
    current.ino !== previous.ino ||
    current.mtimeMs !== previous.mtimeMs ||
    current.ctimeMs !== previous.ctimeMs ||
    current.size !== previous.size ||
    current.mode !== previous.mode
  );
}

/**
 * A file the gateway reads and keeps reading. load() runs once at start-up: a missing file gets
 * the store's default (or stops the gateway), a broken one stops it with the file's reason.
 * reload() runs on every change and SIGHUP: it never throws, and whatever goes wrong (missing,
 * renamed away, unreadable, broken) keeps the last good content and is logged once per change of
 * state. Subclasses parse the text and answer questions about the content.
 */
export abstract class WatchedFile<T> {
  readonly file: string;
  protected readonly logger: FileLog;
  readonly #description: FileDescription;
  #content: T | undefined;
  /** True once the content came from the file (not from the default for a missing file). */
  #fromFile = false;
  /** The reason the last read failed, so the same failure is not logged on every reload. */
  #failure: string | undefined;
  #reloads: Promise<boolean> = Promise.resolve(true);
  /** The version last read (or found missing), so a change made before watch() started is not missed. */
  #lastRead: Version = missingVersion;
  readonly #reloadListeners: ReloadListener[] = [];

  protected constructor(file: string, description: FileDescription, options: WatchedFileOptions = {}) {
    this.file = file;
    this.#description = description;
    this.logger = options.logger ?? silent;
  }

  /** Parses the file's text; throws an error whose message names the file (and line) and the reason. */
  protected abstract parse(text: string): T;

  /** The content when the file is missing at start-up, or undefined to refuse to start. */
  protected abstract contentWhenMissing(): T | undefined;

  /** What to log about freshly read content. */
  protected abstract summarize(content: T): ContentSummary;

  /** The last good content; load() must have succeeded. */
  protected get content(): T {
    if (this.#content === undefined) throw new Error(`${this.file} has not been loaded`);
    return this.#content;
  }

  /** Start-up read. Throws a ConfigError naming the setting, the file and the reason. */
  async load(): Promise<void> {
    const { label, setting } = this.#description;
    const outcome = await this.#read();
    if (outcome.kind === 'failed') throw new ConfigError(settingName(setting), outcome.reason);
    if (outcome.kind === 'missing') {
      const fallback = this.contentWhenMissing();
      if (fallback === undefined) throw new ConfigError(settingName(setting), `${this.file} does not exist`);
      this.#content = fallback;
      this.#fromFile = false;
      return;
    }
    this.#adopt(outcome.content, `${label} loaded`);
  }

  /**
   * Re-reads the file; true when new content is in force. Never throws: on any failure the last
   * good content stays. Reloads run one after another, so the last one reads the latest file.
   */
  reload(): Promise<boolean> {
    const next = this.#reloads.then(() =>
      this.#reloadNow().catch((error: unknown) => {
        this.logger.error({ file: this.file, err: (error as Error).message }, `${this.#description.label} reload failed; keeping the last good ${this.#description.holds}`);
        this.#tell((error as Error).message);
        return false;
      }),
    );
    this.#reloads = next;
    return next;
  }

  /** Adds a listener told of every reload that took new content or refused it (config.reloaded / config.rejected). */
  onReload(listener: ReloadListener): void {
    this.#reloadListeners.push(listener);
  }

  #tell(error?: string): void {
    for (const listener of this.#reloadListeners) {
      try {
        listener(this.file, error);
      } catch (failure) {
        this.logger.error({ file: this.file, err: (failure as Error).message }, 'a reload listener failed');
      }
    }
  }

  /** Reloads whenever the file changes (polling); returns the function that stops watching. */
  watch(): () => void {
    let settle: NodeJS.Timeout | undefined;
    const soon = () => {
      clearTimeout(settle);
      settle = setTimeout(() => void this.reload(), SETTLE_MS);
    };
    const listener = (current: Version, previous: Version) => {
      if (changed(current, previous)) soon();
    };
    watchFile(this.file, { interval: POLL_INTERVAL_MS, persistent: false }, listener);
    const readBefore = this.#lastRead;
    stat(this.file).then(versionOf, () => missingVersion).then((now) => {
      if (changed(now, readBefore)) soon();
    });
    return () => {
      unwatchFile(this.file, listener);
      clearTimeout(settle);
    };
  }

  async #reloadNow(): Promise<boolean> {
    const { label, holds } = this.#description;
    const outcome = await this.#read();
    if (outcome.kind === 'ok') {
      const recovered = this.#failure !== undefined;
      this.#adopt(outcome.content, recovered ? `${label} is readable again and was loaded` : `${label} reloaded`);
      this.#tell();
      return true;
    }
    if (outcome.kind === 'missing' && !this.#fromFile) {
      // Missing at start-up and missing still (or again, after a broken version): the default stays.
      if (this.#failure !== undefined) this.logger.info({ file: this.file }, `${label} is missing, as at start-up; keeping what was in force`);
      this.#failure = undefined;
      return false;
    }
    const reason = outcome.kind === 'missing' ? `${this.file} is missing (deleted or renamed away)` : outcome.reason;
    if (reason === this.#failure) {
      this.logger.debug({ file: this.file, err: reason }, `${label} still unusable; keeping the last good ${holds}`);
    } else {
      this.logger.error({ file: this.file, err: reason }, `${label} reload failed; keeping the last good ${holds}: ${reason}`);
    }
    this.#failure = reason;
    this.#tell(reason);
    return false;
  }

  #adopt(content: T, message: string): void {
    this.#content = content;
    this.#fromFile = true;
    this.#failure = undefined;
    const summary = this.summarize(content);
    this.logger.info({ file: this.file, ...summary.fields }, message);
    for (const warning of summary.warnings ?? []) this.logger.warn({ file: this.file }, warning);
  }

  async #read(): Promise<ReadOutcome<T>> {
    let text: string;
    try {
      // The version comes from the open file, so it is the version of exactly the text read.
      const handle = await open(this.file, 'r');
      try {
        this.#lastRead = versionOf(await handle.stat());
        text = await handle.readFile('utf8');
      } finally {
        await handle.close();
      }
    } catch (error) {
      const { code, message } = error as NodeJS.ErrnoException;
      if (code === 'ENOENT') {
        this.#lastRead = missingVersion;
        return { kind: 'missing' };
      }
      return { kind: 'failed', reason: `cannot read ${this.file} (${code ?? message})` };
    }
    try {
      return { kind: 'ok', content: this.parse(text) };
    } catch (error) {
      const message = (error as Error).message;
      return { kind: 'failed', reason: message.includes(this.file) ? message : `${this.file}: ${message}` };
    }
  }
}
