// Reads one entry of the YAML `providers:` list: typed values with defaults, every error naming its key (providers[1].bind_dn) and line.

import path from 'node:path';
import { isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';
import { ConfigError } from '../errors.js';

/** The raw `providers:` value of the settings file, and how to find its lines. */
export interface ProvidersSource {
  /** As the YAML parser gives it (plain data). */
  value: unknown;
  /** The settings file; relative paths in it are taken from its folder. */
  file: string;
  /** "FILE:LINE:COLUMN" of the value (or the key) at a path below `providers`, when there is one. */
  positionOf(path: readonly (string | number)[], part?: 'key' | 'value'): string | undefined;
}

/** The `providers:` pair of a parsed settings file, with the positions of what is below it. */
export function providersSource(parsed: { file: string; document: Document.Parsed; lineCounter: LineCounter; key: Node | null; value: Node | null; data: unknown }): ProvidersSource {
  const { file, document, lineCounter } = parsed;
  const positionOf = (below: readonly (string | number)[], part: 'key' | 'value' = 'value'): string | undefined => {
    const parent = below.length <= 1 ? parsed.value : (document.getIn(['providers', ...below.slice(0, -1)], true) as Node | undefined);
    let node: Node | null | undefined;
    if (below.length === 0) node = parsed[part];
    else if (below.length === 1) node = isSeq(parent) ? (parent.items[below[0] as number] as Node | undefined) : undefined;
    else if (isMap(parent)) node = parent.items.find((item) => isScalar(item.key) && item.key.value === below.at(-1))?.[part] as Node | null | undefined;
    const position = node?.range ? lineCounter.linePos(node.range[0]) : undefined;
    return position ? `${file}:${position.line}:${position.col}` : undefined;
  };
  return { value: parsed.data, file, positionOf };
}

/** One entry of the list, read key by key; `used` records the keys read, so unknown ones can be refused. */
export class ProviderEntry {
  readonly #values: Record<string, unknown>;
  readonly #source: ProvidersSource;
  readonly #used = new Set<string>();
  readonly label: string;

  constructor(
    source: ProvidersSource,
    readonly index: number,
    values: Record<string, unknown>,
  ) {
    this.#source = source;
    this.#values = values;
    this.label = `providers[${index}]`;
  }

  /** "FILE:LINE:COLUMN: providers[1].key": the key's value (or the key itself) when given, else the entry. */
  where(key?: string, part: 'key' | 'value' = 'value'): string {
    const at = (key === undefined ? undefined : this.#source.positionOf([this.index, key], part)) ?? this.#source.positionOf([this.index]) ?? this.#source.file;
    return `${at}: ${this.label}${key === undefined ? '' : `.${key}`}`;
  }

  fail(key: string | undefined, reason: string, part: 'key' | 'value' = 'value'): never {
    throw new ConfigError(this.where(key, part), reason);
  }

  has(key: string): boolean {
    return this.#values[key] !== undefined && this.#values[key] !== null;
  }

  /** The key's value as YAML gave it (null as undefined), marked as read. */
  raw(key: string): unknown {
    this.#used.add(key);
    const value = this.#values[key];
    return value === null ? undefined : value;
  }

  /** A path as written in the settings file, made absolute from the file's folder. */
  resolvePath(value: string): string {
    return path.resolve(path.dirname(this.#source.file), value);
  }

  text(key: string): string | undefined;
  text(key: string, fallback: string): string;
  text(key: string, fallback?: string): string | undefined {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'string') this.fail(key, 'must be text');
    if (value.trim().length === 0) this.fail(key, 'must not be empty');
    return value;
  }

  required(key: string, example: string): string {
    const value = this.text(key);
    if (value === undefined) this.fail(key, `required, e.g. ${key}: ${example}`);
    return value;
  }

  /** A path, taken from the settings file's folder when relative. */
  path(key: string): string | undefined {
    const value = this.text(key);
    return value === undefined ? undefined : this.resolvePath(value);
  }

  flag(key: string, fallback: boolean): boolean {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') this.fail(key, 'must be true or false');
    return value;
  }

  wholeNumber(key: string, min: number, max: number, fallback: number): number {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) this.fail(key, `must be a whole number from ${min} to ${max}`);
    return value;
  }

  choice<T extends string>(key: string, choices: readonly T[], fallback: T): T {
    const value = this.raw(key);
    if (value === undefined) return fallback;
    if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) this.fail(key, `must be one of ${choices.join(', ')}`);
    return value as T;
  }

  /** A mapping of names to one name or a list of names. */
  nameLists(key: string): Map<string, string[]> {
    const value = this.raw(key);
    const result = new Map<string, string[]>();
    if (value === undefined) return result;
    if (typeof value !== 'object' || Array.isArray(value)) this.fail(key, 'must be a mapping, e.g. "Registry Admins": admins');
    for (const [name, target] of Object.entries(value as Record<string, unknown>)) {
      const targets = Array.isArray(target) ? target : [target];
      if (name.length === 0 || targets.length === 0 || !targets.every((entry) => typeof entry === 'string' && entry.length > 0)) {
        this.fail(key, `${JSON.stringify(name)} must map to a group name or a list of group names`);
      }
      result.set(name, targets as string[]);
    }
    return result;
  }

  /** After reading: any key not read is a mistake (a typo would otherwise be ignored). */
  rejectUnknownKeys(): void {
    for (const key of Object.keys(this.#values)) {
      if (!this.#used.has(key)) this.fail(key, `unknown key for provider type ${JSON.stringify(this.#values.type)}; known keys: ${[...this.#used].sort().join(', ')}`, 'key');
    }
  }
}
