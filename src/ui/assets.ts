// The pages' two assets, served by the gateway itself: /assets/app.css and /assets/app.js (copy buttons and confirmations; pages work without it).

import { createHash } from 'node:crypto';
import type { Request, Response } from 'express';

export const stylesheetPath = '/assets/app.css';
export const scriptPath = '/assets/app.js';
/** Where the sign-in pages' stylesheet was before the web UI; still answered. */
const legacyStylesheetPath = '/login/assets/style.css';

export const stylesheet = `:root { color-scheme: light dark; font-family: system-ui, sans-serif; line-height: 1.5; --line: #8885; --accent: #2f62c9; }
* { box-sizing: border-box; }
body { margin: 0; }
a { color: var(--accent); }
@media (prefers-color-scheme: dark) { :root { --accent: #8fb0ff; } }
.skip { position: absolute; left: -100vw; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
.skip:focus { left: .5rem; top: .5rem; padding: .3rem .6rem; background: Canvas; z-index: 1; }
header.top { display: flex; flex-wrap: wrap; gap: .4rem 1.2rem; align-items: center; padding: .6rem 1rem; border-bottom: 1px solid var(--line); }
header.top .brand { font-weight: 600; text-decoration: none; color: inherit; overflow-wrap: anywhere; }
header.top nav ul { display: flex; flex-wrap: wrap; gap: .2rem 1rem; list-style: none; margin: 0; padding: 0; }
header.top nav a[aria-current] { font-weight: 600; }
header.top .account { margin-left: auto; display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
main { display: block; margin: 0 auto; max-width: 72rem; padding: 1rem; }
h1 { font-size: 1.4rem; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin-top: 1.6rem; }
code, pre, .mono { font-family: ui-monospace, monospace; font-size: .92em; }
code { overflow-wrap: anywhere; }
pre { overflow: auto; max-height: 32rem; padding: .6rem; border: 1px solid var(--line); border-radius: .3rem; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
td.num, th.num { text-align: right; white-space: nowrap; }
form.inline { display: inline; }
.field { display: flex; flex-direction: column; gap: .2rem; margin: .6rem 0; max-width: 32rem; }
.field-row { display: flex; flex-wrap: wrap; gap: .4rem; align-items: center; }
input[type=text], input[type=search], input[type=password], select { font: inherit; padding: .3rem .4rem; max-width: 100%; }
input.copy { width: 100%; font-family: ui-monospace, monospace; }
.copyable { display: flex; gap: .4rem; max-width: 48rem; }
.copyable input { flex: 1; min-width: 0; }
button, .button { font: inherit; padding: .25rem .8rem; cursor: pointer; }
fieldset { border: 1px solid var(--line); max-width: 32rem; }
.notice { padding: .6rem; border-left: .3rem solid #c80; background: #c802; }
.alert { padding: .6rem; border-left: .3rem solid #c33; background: #c332; }
.muted { opacity: .75; }
.pager { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; margin: .8rem 0; }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, summary:focus-visible { outline: .2rem solid var(--accent); outline-offset: .1rem; }
[hidden] { display: none !important; }
@media (max-width: 40rem) {
  main { padding: .6rem; }
  .hide-narrow { display: none; }
  th, td { padding: .25rem .3rem; }
}
`;

export const script = `'use strict';
// Copy buttons: <button data-copy="ID"> copies the value of the input #ID; shown only when this script runs.
for (const button of document.querySelectorAll('button[data-copy]')) {
  button.hidden = false;
  button.addEventListener('click', async () => {
    const input = document.getElementById(button.getAttribute('data-copy'));
    if (!input) return;
    input.focus();
    input.select();
    try {
      await navigator.clipboard.writeText(input.value);
    } catch {
      document.execCommand('copy');
    }
    const label = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = label; }, 1500);
  });
}
// Forms with data-confirm ask first.
for (const form of document.querySelectorAll('form[data-confirm]')) {
  form.addEventListener('submit', (event) => {
    if (!window.confirm(form.getAttribute('data-confirm'))) event.preventDefault();
  });
}
`;

const etagOf = (text: string) => `"${createHash('sha256').update(text).digest('base64url').slice(0, 22)}"`;
const assets = new Map([
  [stylesheetPath, { type: 'text/css; charset=utf-8', body: stylesheet, etag: etagOf(stylesheet) }],
  [legacyStylesheetPath, { type: 'text/css; charset=utf-8', body: stylesheet, etag: etagOf(stylesheet) }],
  [scriptPath, { type: 'text/javascript; charset=utf-8', body: script, etag: etagOf(script) }],
]);

/**
 * Serves an asset: revalidated on every use (no-cache with an ETag of its content), so a new
 * version is seen at once and an unchanged one costs a 304; it works alike with the cache off.
 */
export function serveAsset(req: Request, res: Response): boolean {
  const asset = assets.get(req.path);
  if (asset === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
  res.set('Cache-Control', 'no-cache');
  res.set('ETag', asset.etag);
  res.set('X-Content-Type-Options', 'nosniff');
  res.set('Cross-Origin-Resource-Policy', 'same-origin');
  if (req.headers['if-none-match'] === asset.etag) {
    res.status(304).end();
    return true;
  }
  res.status(200).type(asset.type).send(asset.body);
  return true;
}
