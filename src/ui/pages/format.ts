// How pages write sizes, times and digests: human-readable, with the exact value one hover or selection away.

import { html, type Html } from '../html.js';

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 -> "1.5 KiB"; undefined -> "". */
function sizeText(bytes: number | undefined): string {
  if (bytes === undefined || !Number.isFinite(bytes) || bytes < 0) return '';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** A size with the exact byte count as its title. */
export function size(bytes: number | undefined): Html {
  if (bytes === undefined) return html`<span class="muted">—</span>`;
  return html`<span title="${bytes.toLocaleString('en')} bytes">${sizeText(bytes)}</span>`;
}

const steps: [number, string][] = [
  [60, 'second'],
  [60, 'minute'],
  [24, 'hour'],
  [30, 'day'],
  [12, 'month'],
  [Infinity, 'year'],
];

/** "3 days ago", "in 2 hours", "just now". */
function relativeTime(iso: string, now: number): string | undefined {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return undefined;
  let amount = Math.round((now - at) / 1000);
  const future = amount < 0;
  amount = Math.abs(amount);
  if (amount < 45) return 'just now';
  for (const [limit, unit] of steps) {
    if (amount < limit) {
      const text = `${amount} ${unit}${amount === 1 ? '' : 's'}`;
      return future ? `in ${text}` : `${text} ago`;
    }
    amount = Math.round(amount / limit);
  }
  return undefined;
}

/** A <time> with the ISO time as its machine value and title, relative text shown. */
export function time(iso: string | undefined, now: number): Html {
  if (iso === undefined) return html`<span class="muted">—</span>`;
  const relative = relativeTime(iso, now);
  if (relative === undefined) return html`<span>${iso}</span>`;
  return html`<time datetime="${iso}" title="${iso}">${relative}</time>`;
}

/** sha256:0123456789ab (12 hex digits), the whole digest as its title. */
export function shortDigest(digest: string | undefined): Html {
  if (digest === undefined) return html`<span class="muted">—</span>`;
  const colon = digest.indexOf(':');
  const shown = colon === -1 ? digest.slice(0, 19) : digest.slice(0, colon + 13);
  return html`<code title="${digest}">${shown}</code>`;
}

/** Path segments of a repository name kept readable in URLs (names hold only a-z 0-9 . _ - /). */
export function repositoryUrl(name: string): string {
  return `/r/${name.split('/').map(encodeURIComponent).join('/')}`;
}

export function tagUrl(repository: string, tag: string): string {
  return `${repositoryUrl(repository)}/-/tags/${encodeURIComponent(tag)}`;
}

export function manifestUrl(repository: string, digest: string): string {
  return `${repositoryUrl(repository)}/-/manifests/${encodeURIComponent(digest)}`;
}
