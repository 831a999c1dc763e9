// The sign-in form: the same user and password as docker login, and the identity provider's sign-in when one is configured.

import { csrfFieldName } from '../csrf.js';
import { html } from '../html.js';
import { page, type Frame } from './layout.js';

export interface SignInPageData {
  csrf: string;
  /** Where to go once signed in (a path on this site). */
  next: string;
  user?: string;
  /** Why the last attempt failed, shown as an alert. */
  problem?: string;
  /** The OIDC provider's name, when configured. */
  provider?: string;
}

export function signInPage(frame: Frame, data: SignInPageData): string {
  return page(frame, 'Sign in', html`<h1>Sign in</h1>
${data.problem === undefined ? '' : html`<p class="alert" role="alert">${data.problem}</p>`}
<p>Use the user name and password (or access token) you give <code>docker login</code>.</p>
<form method="post" action="/sign-in">
<input type="hidden" name="${csrfFieldName}" value="${data.csrf}">
<input type="hidden" name="next" value="${data.next}">
<div class="field"><label for="user">Username</label>
<input id="user" type="text" name="user" value="${data.user ?? ''}" autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="512"></div>
<div class="field"><label for="password">Password</label>
<input id="password" type="password" name="password" autocomplete="current-password" required maxlength="4096"></div>
<button type="submit">Sign in</button>
</form>
${data.provider === undefined ? '' : html`<p><a href="/login?to=ui">Sign in with ${data.provider}</a></p>`}`);
}
