// The rules in force: one RuleSet, replaced whole when the access file changes, so no request sees half of each.

import type { Access, Identity } from './access.js';
import type { Explanation, RuleSet } from './access-rules.js';

export class CurrentRules implements RuleSet {
  #rules: RuleSet;

  constructor(rules: RuleSet) {
    this.#rules = rules;
  }

  replace(rules: RuleSet): void {
    this.#rules = rules;
  }

  grant(identity: Identity, requested: readonly Access[]): Access[] {
    return this.#rules.grant(identity, requested);
  }

  allowsAnonymous(): boolean {
    return this.#rules.allowsAnonymous();
  }

  mayPull(identity: Identity, repository: string): boolean {
    return this.#rules.mayPull(identity, repository);
  }

  hasCatalog(identity: Identity): boolean {
    return this.#rules.hasCatalog(identity);
  }

  isImmutableTag(repository: string, tag: string): boolean {
    return this.#rules.isImmutableTag(repository, tag);
  }

  explain(identity: Identity, action: string, repository: string): Explanation {
    return this.#rules.explain(identity, action, repository);
  }

  groupsOf(user: string): string[] {
    return this.#rules.groupsOf(user);
  }
}
