// The rules in force: the watched access file, replaced whole on change so no request sees half of each, never dropped when the file goes.

import type { Access, Identity } from './access.js';
import { AllowAuthenticated, parseAccessFile, type Explanation, type ParsedAccessFile, type RuleSet } from './access-rules.js';
import { WatchedFile, type ContentSummary, type WatchedFileOptions } from '../config/watched-file.js';

export interface CurrentRulesOptions extends WatchedFileOptions {
  /** The file was named explicitly (the access setting): then a missing file stops the start. */
  required: boolean;
}

/**
 * The access file's rules. Missing at start-up (at its default place), every authenticated user may
 * do everything; once running, a file that is deleted, renamed away, unreadable or broken keeps the
 * last good rules: losing the file must never widen anyone's access.
 */
export class CurrentRules extends WatchedFile<ParsedAccessFile> implements RuleSet {
  readonly #required: boolean;

  constructor(file: string, options: CurrentRulesOptions) {
    super(file, { label: 'access file', holds: 'rules', setting: 'access' }, options);
    this.#required = options.required;
  }

  /** Loaded rules; throws a ConfigError naming FILE:LINE and the reason for a broken file. */
  static async load(file: string, options: CurrentRulesOptions): Promise<CurrentRules> {
    const rules = new CurrentRules(file, options);
    await rules.load();
    return rules;
  }

  protected parse(text: string): ParsedAccessFile {
    return parseAccessFile(text, this.file);
  }

  protected contentWhenMissing(): ParsedAccessFile | undefined {
    if (this.#required) return undefined;
    this.logger.info({ file: this.file }, 'no access file: every authenticated user may do everything, anonymous callers nothing');
    return { rules: new AllowAuthenticated(), warnings: [] };
  }

  protected summarize(content: ParsedAccessFile): ContentSummary {
    return { fields: { anonymous: content.rules.allowsAnonymous() }, warnings: content.warnings };
  }

  grant(identity: Identity, requested: readonly Access[]): Access[] {
    return this.content.rules.grant(identity, requested);
  }

  allowsAnonymous(): boolean {
    return this.content.rules.allowsAnonymous();
  }

  isImmutableTag(repository: string, tag: string): boolean {
    return this.content.rules.isImmutableTag(repository, tag);
  }

  hasImmutableTags(repository: string): boolean {
    return this.content.rules.hasImmutableTags(repository);
  }

  explain(identity: Identity, action: string, repository: string): Explanation {
    return this.content.rules.explain(identity, action, repository);
  }

  groupsOf(user: string): string[] {
    return this.content.rules.groupsOf(user);
  }
}
