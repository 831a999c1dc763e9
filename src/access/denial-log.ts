// Why a request was denied, for the access log: each action it lacked, on which repository, and the rule that decided.

import type { Access, Authorizer, Identity } from './access.js';
import type { Explanation } from './access-rules.js';

export interface Denial {
  action: string;
  /** Absent for the catalog, which belongs to no repository. */
  repository?: string;
  /** The deciding rule as the access rules explain it (index, line, text), or why nothing granted it. */
  rule: string;
}

/** Where the caller's holdings came from: the rules just now (Basic, /token), or an access token (Bearer). */
export type HoldingsSource = 'rules' | 'token';

interface Explainer {
  explain(identity: Identity, action: string, repository: string): Explanation;
}

/** A request needs a handful of entries at most; this only bounds what a crafted /token query can make the log hold. */
const maxDenials = 10;

function explainerOf(authorizer: Authorizer): Explainer | undefined {
  const candidate = authorizer as Partial<Explainer>;
  return typeof candidate.explain === 'function' ? (authorizer as Authorizer & Explainer) : undefined;
}

function holdsAction(holds: readonly Access[], need: Access, action: string): boolean {
  const entry = holds.find((held) => held.type === need.type && held.name === need.name);
  return entry !== undefined && (entry.actions.includes('*') || entry.actions.includes(action));
}

/** The actions of `needed` that `holds` lacks, each with the rule that decided it. */
export function describeDenials(authorizer: Authorizer, identity: Identity, needed: readonly Access[], holds: readonly Access[], source: HoldingsSource): Denial[] {
  const explainer = explainerOf(authorizer);
  const denials: Denial[] = [];
  for (const need of needed) {
    for (const action of need.actions) {
      if (denials.length >= maxDenials) return denials;
      if (holdsAction(holds, need, action)) continue;
      const isCatalog = need.type === 'registry';
      const asked = isCatalog ? 'catalog' : action;
      const denial: Denial = isCatalog ? { action: asked, rule: '' } : { action: asked, repository: need.name, rule: '' };
      denial.rule = decidingRule(explainer?.explain(identity, asked, isCatalog ? '' : need.name), identity, source);
      denials.push(denial);
    }
  }
  return denials;
}

function decidingRule(explanation: Explanation | undefined, identity: Identity, source: HoldingsSource): string {
  if (explanation === undefined) return 'no rule allows it';
  if (!explanation.allowed) return explanation.reason;
  // The rules allow it, so something narrower than the rules stood in the way.
  if (source === 'token') return 'the access token presented does not grant it';
  if (identity.scopeLimit !== undefined) return "outside the CI token's scopes";
  return explanation.reason;
}
