// The frame of every page: skip link, header (the registry's name, navigation, who is signed in, sign-out), main; one stylesheet and one script from this origin.

import { scriptPath, stylesheetPath } from '../assets.js';
import { csrfFieldName } from '../csrf.js';
import { html, type Html } from '../html.js';

export interface Frame {
  /** The registry's public host[:port]: the header's name. */
  brand: string;
  /** The signed-in user, when there is one. */
  user?: string;
  /** The CSRF token of the sign-out form (with user). */
  csrf?: string;
  /** The browse pages and the password sign-in are on (GATEWAY_UI). */
  browse: boolean;
  /** The OIDC sign-in, when configured: where "Sign in" goes without the browse pages. */
  signInPath: string;
  current?: 'repositories' | 'tokens' | 'sign-in';
}

function nav(frame: Frame): Html {
  const item = (key: Frame['current'], href: string, text: string) =>
    html`<li><a href="${href}"${frame.current === key ? html` aria-current="page"` : ''}>${text}</a></li>`;
  return html`<nav aria-label="Main"><ul>
${frame.browse ? item('repositories', '/', 'Repositories') : ''}
${item('tokens', '/tokens', 'Access tokens')}
</ul></nav>`;
}

function account(frame: Frame): Html {
  if (frame.user === undefined) {
    return html`<div class="account"><a href="${frame.signInPath}"${frame.current === 'sign-in' ? html` aria-current="page"` : ''}>Sign in</a></div>`;
  }
  return html`<div class="account"><span>Signed in as <strong>${frame.user}</strong></span>
<form class="inline" method="post" action="/sign-out">
<input type="hidden" name="${csrfFieldName}" value="${frame.csrf ?? ''}">
<button type="submit">Sign out</button>
</form></div>`;
}

/** A whole page; `title` goes to <title> (the h1 is the body's). */
export function page(frame: Frame, title: string, body: Html): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${title} · ${frame.brand}</title>
<link rel="stylesheet" href="${stylesheetPath}">
<script src="${scriptPath}" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<a class="brand" href="${frame.browse ? '/' : '/tokens'}">${frame.brand}</a>
${nav(frame)}
${account(frame)}
</header>
<main id="main" tabindex="-1">
${body}
</main>
</body>
</html>
`.toString();
}

/** A page that says what happened and what to do, never a stack trace; `alert` marks a refusal for assistive technology. */
export function messagePage(frame: Frame, title: string, message: string, options: { link?: { href: string; text: string }; alert?: boolean } = {}): string {
  const text = options.alert ? html`<p class="alert" role="alert">${message}</p>` : html`<p>${message}</p>`;
  return page(frame, title, html`<h1>${title}</h1>
${text}
${options.link === undefined ? '' : html`<p><a href="${options.link.href}">${options.link.text}</a></p>`}`);
}
