// A tag's or a digest's page: the pull command, manifest, configuration, layers, platforms of an index, referrers.

import type { ImageConfigView, ImageView, ReferrerRow } from '../browse/model.js';
import { html, type Html } from '../html.js';
import { manifestUrl, repositoryUrl, shortDigest, size, tagUrl, time } from './format.js';
import { page, type Frame } from './layout.js';

/** `docker pull HOST/REPO:TAG` or `HOST/REPO@DIGEST`. */
function pullCommand(host: string, view: Pick<ImageView, 'repository' | 'tag' | 'digest'>): string {
  return `docker pull ${host}/${view.repository}${view.tag === undefined ? `@${view.digest}` : `:${view.tag}`}`;
}

export function imageTitle(view: Pick<ImageView, 'repository' | 'tag' | 'digest'>): string {
  return view.tag === undefined ? `${view.repository}@${view.digest}` : `${view.repository}:${view.tag}`;
}

function keyValueTable(caption: string, entries: [string, string][]): Html {
  if (entries.length === 0) return html``;
  return html`<div class="table-wrap"><table>
<caption class="muted">${caption}</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Value</th></tr></thead>
<tbody>${entries.map(([key, value]) => html`<tr><td><code>${key}</code></td><td><code>${value}</code></td></tr>`)}</tbody>
</table></div>`;
}

function envEntries(env: readonly string[]): [string, string][] {
  return env.map((entry) => {
    const equals = entry.indexOf('=');
    return equals === -1 ? [entry, ''] : [entry.slice(0, equals), entry.slice(equals + 1)];
  });
}

function configuration(config: ImageConfigView | undefined, now: number): Html {
  if (config === undefined) return html`<p>No configuration could be read.</p>`;
  const platform = [config.os, config.architecture, config.variant].filter((part) => part !== undefined).join('/');
  const facts: [string, Html | string][] = [];
  if (platform !== '') facts.push(['Platform', platform]);
  if (config.created !== undefined) facts.push(['Created', time(config.created, now)]);
  if (config.entrypoint !== undefined) facts.push(['Entrypoint', html`<code>${JSON.stringify(config.entrypoint)}</code>`]);
  if (config.cmd !== undefined) facts.push(['Command', html`<code>${JSON.stringify(config.cmd)}</code>`]);
  if (config.workingDir !== undefined) facts.push(['Working directory', html`<code>${config.workingDir}</code>`]);
  if (config.user !== undefined) facts.push(['User', config.user]);
  const history = (config.history ?? []).map(
    (step) => html`<tr><td>${time(step.created, now)}</td><td><code>${step.createdBy ?? ''}</code>${step.comment ? html`<br><span class="muted">${step.comment}</span>` : ''}</td><td>${step.emptyLayer ? 'no' : 'yes'}</td></tr>`,
  );
  return html`<div class="table-wrap"><table>
<tbody>${facts.map(([name, value]) => html`<tr><th scope="row">${name}</th><td>${value}</td></tr>`)}</tbody>
</table></div>
${keyValueTable('Environment', envEntries(config.env ?? []))}
${keyValueTable('Labels', Object.entries(config.labels ?? {}))}
${history.length === 0 ? '' : html`<h3>History</h3><div class="table-wrap"><table>
<thead><tr><th scope="col">Created</th><th scope="col">Step</th><th scope="col">Layer</th></tr></thead>
<tbody>${history}</tbody>
</table></div>`}`;
}

function referrers(view: ImageView): Html {
  if (view.referrers.length === 0) return html`<p>No signatures, SBOMs or other artifacts refer to this image.</p>`;
  const annotations = (row: ReferrerRow) =>
    Object.entries(row.annotations ?? {}).map(([key, value]) => html`<div><code>${key}</code>: <code>${value}</code></div>`);
  return html`<div class="table-wrap"><table>
<thead><tr><th scope="col">Artifact type</th><th scope="col">Digest</th><th scope="col" class="num">Size</th><th scope="col">Annotations</th></tr></thead>
<tbody>${view.referrers.map(
    (row) => html`<tr><td><code>${row.artifactType ?? row.mediaType}</code></td><td><a href="${manifestUrl(view.repository, row.digest)}">${shortDigest(row.digest)}</a></td><td class="num">${size(row.size)}</td><td>${annotations(row)}</td></tr>`,
  )}</tbody>
</table></div>`;
}

export interface ImagePageData {
  view: ImageView;
  /** The registry's public host[:port], for the pull command. */
  host: string;
  now: number;
}

export function imagePage(frame: Frame, { view, host, now }: ImagePageData): string {
  const title = imageTitle(view);
  const isIndex = view.platforms.length > 0 && view.config === undefined && view.layers.length === 0;
  const deleteHref = view.tag === undefined ? `${manifestUrl(view.repository, view.digest)}/delete` : `${tagUrl(view.repository, view.tag)}/delete`;
  const layers = view.layers.map(
    (layer) => html`<tr><td><code>${layer.digest}</code></td><td class="hide-narrow"><code>${layer.mediaType}</code></td><td class="num">${size(layer.size)}</td></tr>`,
  );
  const platforms = view.platforms.map(
    (row) => html`<tr><td><a href="${manifestUrl(view.repository, row.digest)}">${row.platform}</a></td><td>${shortDigest(row.digest)}</td><td class="num">${size(row.size)}</td><td>${time(row.created, now)}</td></tr>`,
  );
  return page(frame, title, html`<p><a href="${repositoryUrl(view.repository)}">${view.repository}</a></p>
<h1>${title}</h1>
${view.problems.length === 0 ? '' : html`<div class="notice">${view.problems.map((problem) => html`<p>${problem}</p>`)}</div>`}
<div class="field">
<label for="pull">Pull command</label>
<div class="copyable"><input id="pull" class="copy" type="text" readonly value="${pullCommand(host, view)}" autocomplete="off" spellcheck="false">
<button type="button" data-copy="pull" hidden>Copy pull command</button></div>
</div>
<div class="table-wrap"><table><tbody>
<tr><th scope="row">Digest</th><td><code>${view.digest}</code></td></tr>
<tr><th scope="row">Media type</th><td><code>${view.mediaType}</code></td></tr>
${view.size === undefined ? '' : html`<tr><th scope="row">Size</th><td>${size(view.size)}</td></tr>`}
${view.immutable ? html`<tr><th scope="row">Immutable</th><td>yes: an immutable-tag rule covers this tag</td></tr>` : ''}
</tbody></table></div>
${view.mayDelete && !view.immutable ? html`<p><a href="${deleteHref}">${view.tag === undefined ? 'Delete manifest' : 'Delete tag'}</a></p>` : ''}
${isIndex || view.platforms.length > 1 ? html`<h2>Platforms</h2><div class="table-wrap"><table>
<thead><tr><th scope="col">Platform</th><th scope="col">Digest</th><th scope="col" class="num">Size</th><th scope="col">Created</th></tr></thead>
<tbody>${platforms}</tbody>
</table></div>` : ''}
${isIndex ? '' : html`<h2>Configuration</h2>
${configuration(view.config, now)}
<h2>Layers</h2>
${layers.length === 0 ? html`<p>No layers.</p>` : html`<div class="table-wrap"><table>
<thead><tr><th scope="col">Digest</th><th scope="col" class="hide-narrow">Media type</th><th scope="col" class="num">Size</th></tr></thead>
<tbody>${layers}</tbody>
</table></div>`}`}
<h2>Referrers</h2>
${referrers(view)}
<h2>Manifest</h2>
<pre>${view.manifestJson}</pre>`);
}
