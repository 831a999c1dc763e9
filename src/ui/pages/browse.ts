// The repository list (search, pages) and a repository's page (its tags, one row per platform of an index).

import type { RepositoryList, RepositoryView, TagRow } from '../browse/model.js';
import { html, type Html } from '../html.js';
import { repositoryUrl, shortDigest, size, tagUrl, time } from './format.js';
import { page, type Frame } from './layout.js';

function pageCount(total: number, perPage: number): number {
  return Math.max(1, Math.ceil(total / perPage));
}

/** "Previous page" / "Page N of M" / "Next page", keeping the other query fields. */
function pager(base: string, query: Record<string, string>, current: number, pages: number): Html {
  const link = (number: number, text: string, rel: string) => {
    const params = new URLSearchParams({ ...query, page: String(number) });
    return html`<a href="${`${base}?${params}`}" rel="${rel}">${text}</a>`;
  };
  return html`<nav class="pager" aria-label="Pages">
${current > 1 ? link(Math.min(current - 1, pages), 'Previous page', 'prev') : ''}
<span>Page ${current} of ${pages}</span>
${current < pages ? link(current + 1, 'Next page', 'next') : ''}
</nav>`;
}

export function listPage(frame: Frame, list: RepositoryList, search: string, now: number): string {
  const pages = pageCount(list.total, list.perPage);
  const rows = list.repositories.map(
    (repository) => html`<tr>
<td><a href="${repositoryUrl(repository.name)}">${repository.name}</a></td>
<td class="num">${repository.tagCount ?? html`<span class="muted">—</span>`}</td>
<td>${time(repository.lastPush, now)}</td>
</tr>`,
  );
  const query: Record<string, string> = search === '' ? {} : { q: search };
  const empty = search === '' ? 'There are no repositories you may see.' : 'No repository you may see matches this search.';
  return page(frame, 'Repositories', html`<h1>Repositories</h1>
<form method="get" action="/" role="search" class="field-row">
<label for="q">Search repositories</label>
<input id="q" type="search" name="q" value="${search}" maxlength="255" autocomplete="off" spellcheck="false">
<button type="submit">Search</button>
</form>
<p class="muted">${list.total === 1 ? '1 repository' : `${list.total.toLocaleString('en')} repositories`}${search === '' ? '' : html` matching <strong>${search}</strong>`}</p>
${list.repositories.length === 0
    ? html`<p>${empty}</p>`
    : html`<div class="table-wrap"><table>
<thead><tr><th scope="col">Repository</th><th scope="col" class="num">Tags</th><th scope="col">Last push</th></tr></thead>
<tbody>
${rows}
</tbody>
</table></div>`}
${pager('/', query, list.page, pages)}`);
}

function platformsText(row: TagRow): Html {
  if (row.platforms.length === 0) return html`<span class="muted">—</span>`;
  return html`${row.platforms.map((platform, index) => html`${index > 0 ? html`<br>` : ''}${platform.platform}`)}`;
}

function tagRows(view: RepositoryView, now: number): Html[] {
  return view.tags.map((row) => {
    const index = row.size === undefined && row.platforms.length > 1;
    const sizeCell = index
      ? html`${row.platforms.map((platform, i) => html`${i > 0 ? html`<br>` : ''}${size(platform.size)}`)}`
      : size(row.size ?? row.platforms[0]?.size);
    const created = row.created ?? (row.platforms.length === 1 ? row.platforms[0]!.created : undefined);
    const action = row.immutable
      ? html`<span class="muted" title="An immutable-tag rule covers this tag">immutable</span>`
      : view.mayDelete
        ? html`<a href="${tagUrl(view.name, row.tag)}/delete" aria-label="${`Delete ${row.tag}`}">Delete</a>`
        : '';
    return html`<tr>
<td><a href="${tagUrl(view.name, row.tag)}">${row.tag}</a>${row.problem === undefined ? '' : html`<br><span class="muted">${row.problem}</span>`}</td>
<td>${shortDigest(row.digest)}</td>
<td class="num">${sizeCell}</td>
<td>${time(created, now)}</td>
<td>${platformsText(row)}</td>
${view.mayDelete ? html`<td>${action}</td>` : ''}
</tr>`;
  });
}

export function repositoryPage(frame: Frame, view: RepositoryView, now: number): string {
  const pages = pageCount(view.totalTags, view.perPage);
  const body = view.tags.length === 0
    ? html`<p>This repository has no tags.</p>`
    : html`<div class="table-wrap"><table>
<thead><tr><th scope="col">Tag</th><th scope="col">Digest</th><th scope="col" class="num">Size</th><th scope="col">Created</th><th scope="col">Platforms</th>${view.mayDelete ? html`<th scope="col"><span class="visually-hidden">Delete</span></th>` : ''}</tr></thead>
<tbody>
${tagRows(view, now)}
</tbody>
</table></div>`;
  return page(frame, view.name, html`<p><a href="/">Repositories</a></p>
<h1>${view.name}</h1>
<p class="muted">${view.totalTags === 1 ? '1 tag' : `${view.totalTags.toLocaleString('en')} tags`}</p>
${body}
${pages > 1 ? pager(repositoryUrl(view.name), {}, view.page, pages) : ''}`);
}
