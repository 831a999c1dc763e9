// The sign-in pages as HTML: the token page (a new token shown once, the user's tokens, revoke and sign-out forms) and message pages; one stylesheet.

import type { CiTokenRecord } from '../auth/ci-tokens.js';
import { csrfFieldName } from './csrf.js';
import { html, type Html } from './html.js';

export const stylesheetPath = '/login/assets/style.css';

/** The only asset: served by the gateway itself (the pages load nothing from anywhere else). */
export const stylesheet = `:root { color-scheme: light dark; font-family: system-ui, sans-serif; line-height: 1.5; }
body { margin: 0 auto; max-width: 46rem; padding: 1rem; }
h1 { font-size: 1.4rem; }
code, pre, .token { font-family: ui-monospace, monospace; }
pre, .token { overflow-x: auto; padding: .6rem; border: 1px solid #8886; border-radius: .3rem; }
.token { display: block; width: 100%; box-sizing: border-box; font-size: 1rem; }
.notice { padding: .6rem; border-left: .3rem solid #c80; background: #c802; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #8884; vertical-align: top; }
form.inline { display: inline; }
button { font: inherit; padding: .2rem .8rem; }
a:focus, button:focus, input:focus { outline: .15rem solid #36c; outline-offset: .1rem; }
@media (max-width: 32rem) { th:nth-child(3), td:nth-child(3) { display: none; } }
`;

/** Every page: no script, one same-origin stylesheet. */
export function layout(title: string, body: Html): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title}</title>
<link rel="stylesheet" href="${stylesheetPath}">
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`.toString();
}

export interface TokenPageData {
  user: string;
  groups: readonly string[];
  provider: string;
  /** The registry's public host[:port], for the docker login line. */
  host: string;
  csrf: string;
  tokens: readonly CiTokenRecord[];
  /** Only right after it was made: the credential, shown this once. */
  created?: { credential: string; record: CiTokenRecord };
  now: number;
}

function tokenRows(data: TokenPageData): Html {
  if (data.tokens.length === 0) return html`<p>You have no personal access tokens.</p>`;
  const rows = data.tokens.map((record) => {
    const expired = record.expiresAt !== null && Date.parse(record.expiresAt) <= data.now;
    return html`<tr>
<td><code>${record.id}</code>${record.id === data.created?.record.id ? html` (new)` : ''}</td>
<td>${record.createdAt.slice(0, 10)}</td>
<td>${record.expiresAt === null ? 'never' : record.expiresAt.slice(0, 10)}${expired ? html` <strong>expired</strong>` : ''}</td>
<td><form class="inline" method="post" action="/login/tokens/revoke">
<input type="hidden" name="${csrfFieldName}" value="${data.csrf}">
<input type="hidden" name="id" value="${record.id}">
<button type="submit" aria-label="Revoke token ${record.id}">Revoke</button>
</form></td>
</tr>`;
  });
  return html`<table>
<thead><tr><th scope="col">Token</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col"></th></tr></thead>
<tbody>
${rows}
</tbody>
</table>`;
}

export function tokenPage(data: TokenPageData): string {
  const created = data.created;
  const fresh = created === undefined
    ? ''
    : html`<section aria-labelledby="new-token">
<h2 id="new-token">Your new personal access token</h2>
<p class="notice">Copy it now: it is shown only this once. It expires on ${created.record.expiresAt?.slice(0, 10) ?? 'never'}.</p>
<label for="token">Token</label>
<input id="token" class="token" type="text" readonly value="${created.credential}" autocomplete="off" spellcheck="false">
<p>Log in with it (paste the token when asked for the password):</p>
<pre>docker login ${data.host} -u ${data.user}</pre>
<p>or from a script, with the token on standard input:</p>
<pre>docker login ${data.host} -u ${data.user} --password-stdin</pre>
</section>`;
  const groups = data.groups.length === 0 ? 'none' : data.groups.join(', ');
  return layout(
    'Personal access tokens',
    html`<h1>Personal access tokens</h1>
<p>Signed in with ${data.provider} as <strong>${data.user}</strong> (groups: ${groups}).</p>
${fresh}
<section aria-labelledby="your-tokens">
<h2 id="your-tokens">Your tokens</h2>
<p>A token may do what the access rules allow ${data.user} with the groups it was made with. Revoke any you no longer use.</p>
${tokenRows(data)}
</section>
<p><a href="/login">Sign in again for another token</a></p>
<form method="post" action="/login/sign-out">
<input type="hidden" name="${csrfFieldName}" value="${data.csrf}">
<button type="submit">Sign out</button>
</form>`,
  );
}

/** A page that says what happened and what to do, never a stack trace. */
export function messagePage(title: string, message: string, link?: { href: string; text: string }): string {
  return layout(title, html`<h1>${title}</h1>
<p>${message}</p>
${link === undefined ? '' : html`<p><a href="${link.href}">${link.text}</a></p>`}`);
}
