// The access tokens page: create one (scope, expiry; the credential shown once), the user's own tokens, revoke.

import { formatScope } from '../../access/access.js';
import type { CiTokenRecord } from '../../auth/ci-tokens.js';
import { csrfFieldName } from '../csrf.js';
import { html, type Html } from '../html.js';
import { time } from './format.js';
import { page, type Frame } from './layout.js';

export interface TokenFormValues {
  repositories: string;
  actions: string[];
  expires: string;
  description: string;
}

export interface TokensPageData {
  user: string;
  /** Why this user cannot have tokens here, instead of the form and the list. */
  unavailable?: string;
  /** An OIDC user's tokens may leave Repositories empty: the access rules alone decide. */
  scopesOptional: boolean;
  expiryChoices: { value: string; label: string }[];
  /** The registry's public host[:port], for the docker login line. */
  host: string;
  csrf: string;
  tokens: readonly CiTokenRecord[];
  /** Right after it was made: the credential, shown this once. */
  created?: { credential: string; record: CiTokenRecord };
  /** Why the last form was refused, and what it held. */
  problem?: string;
  values?: TokenFormValues;
  now: number;
}

function scopeText(record: CiTokenRecord): string {
  if (record.scopes.length === 0) return 'what the access rules allow';
  return record.scopes.map((scope) => formatScope(scope).replace(/^repository:/, '')).join(' ');
}

function tokenTable(data: TokensPageData): Html {
  if (data.tokens.length === 0) return html`<p>You have no access tokens.</p>`;
  const rows = data.tokens.map((record) => {
    const expired = record.expiresAt !== null && Date.parse(record.expiresAt) <= data.now;
    return html`<tr>
<td><code>${record.id}</code>${record.id === data.created?.record.id ? ' (new)' : ''}</td>
<td><code>${scopeText(record)}</code>${record.groups === undefined || record.groups.length === 0 ? '' : html`<br><span class="muted">groups: ${record.groups.join(', ')}</span>`}</td>
<td class="hide-narrow">${record.description ?? ''}</td>
<td class="hide-narrow">${time(record.createdAt, data.now)}</td>
<td>${record.expiresAt === null ? 'never' : time(record.expiresAt, data.now)}${expired ? html` <strong>expired</strong>` : ''}</td>
<td><form class="inline" method="post" action="/tokens/${record.id}/revoke" data-confirm="${`Revoke token ${record.id}? Whatever uses it stops working.`}">
<input type="hidden" name="${csrfFieldName}" value="${data.csrf}">
<button type="submit" aria-label="${`Revoke ${record.id}`}">Revoke</button>
</form></td>
</tr>`;
  });
  return html`<div class="table-wrap"><table>
<thead><tr><th scope="col">Token</th><th scope="col">Scope</th><th scope="col" class="hide-narrow">Description</th><th scope="col" class="hide-narrow">Created</th><th scope="col">Expires</th><th scope="col"><span class="visually-hidden">Revoke</span></th></tr></thead>
<tbody>
${rows}
</tbody>
</table></div>`;
}

function createdSection(data: TokensPageData): Html {
  const created = data.created;
  if (created === undefined) return html``;
  return html`<section aria-labelledby="new-token-heading">
<h2 id="new-token-heading">Your new access token</h2>
<p class="notice">Copy it now: it is shown only this once. It expires ${created.record.expiresAt === null ? 'never' : html`on ${created.record.expiresAt.slice(0, 10)}`}.</p>
<div class="field"><label for="new-token">New token</label>
<div class="copyable"><input id="new-token" class="copy" type="text" readonly value="${created.credential}" autocomplete="off" spellcheck="false">
<button type="button" data-copy="new-token" hidden>Copy token</button></div></div>
<p>Log in with it (paste the token when asked for the password):</p>
<pre>docker login ${data.host} -u ${data.user}</pre>
<p>or from a script, with the token on standard input:</p>
<pre>docker login ${data.host} -u ${data.user} --password-stdin</pre>
</section>`;
}

function createForm(data: TokensPageData): Html {
  const values = data.values ?? { repositories: '', actions: ['pull'], expires: '30d', description: '' };
  const action = (name: string) =>
    html`<label><input type="checkbox" name="actions" value="${name}"${values.actions.includes(name) ? html` checked` : ''}> ${name}</label>`;
  return html`<section aria-labelledby="create-heading">
<h2 id="create-heading">Create a token</h2>
${data.problem === undefined ? '' : html`<p class="alert" role="alert">${data.problem}</p>`}
<form method="post" action="/tokens">
<input type="hidden" name="${csrfFieldName}" value="${data.csrf}">
<div class="field"><label for="repositories">Repositories</label>
<input id="repositories" type="text" name="repositories" value="${values.repositories}" aria-describedby="repositories-hint" autocomplete="off" spellcheck="false" maxlength="2000"${data.scopesOptional ? '' : html` required`}>
<small id="repositories-hint" class="muted">Names or patterns, separated by spaces: <code>app</code>, <code>${data.user}/*</code> (one level), <code>team/**</code> (any depth).${data.scopesOptional ? ' Empty: whatever the access rules allow you.' : ''} The token never gets more than the access rules give you.</small></div>
<fieldset><legend>Actions</legend><div class="field-row">${action('pull')} ${action('push')} ${action('delete')}</div></fieldset>
<div class="field"><label for="expires">Expires in</label>
<select id="expires" name="expires">${data.expiryChoices.map((choice) => html`<option value="${choice.value}"${choice.value === values.expires ? html` selected` : ''}>${choice.label}</option>`)}</select></div>
<div class="field"><label for="description">Description</label>
<input id="description" type="text" name="description" value="${values.description}" maxlength="200" autocomplete="off"></div>
<button type="submit">Create token</button>
</form>
</section>`;
}

export function tokensPage(frame: Frame, data: TokensPageData): string {
  if (data.unavailable !== undefined) {
    return page(frame, 'Access tokens', html`<h1>Access tokens</h1>
<p class="notice">${data.unavailable}</p>`);
  }
  return page(frame, 'Access tokens', html`<h1>Access tokens</h1>
<p>A token is a password for <code>docker login</code> and CI jobs, limited to the repositories and actions you choose. Revoke any you no longer use.</p>
${createdSection(data)}
${createForm(data)}
<section aria-labelledby="yours-heading">
<h2 id="yours-heading">Your tokens</h2>
${tokenTable(data)}
</section>`);
}
