// The confirmation before a delete (a form that posts to the same address) and the refusal that says why.

import { csrfFieldName } from '../csrf.js';
import { html } from '../html.js';
import { repositoryUrl } from './format.js';
import { page, type Frame } from './layout.js';

export interface DeleteTarget {
  repository: string;
  /** `repo:tag` or `repo@digest`. */
  title: string;
  /** What goes: "the tag" or "the manifest and every tag that points at it". */
  what: string;
  /** The page's own address: the form posts there. */
  action: string;
  /** Where "Cancel" goes back to. */
  back: string;
}

export function confirmDeletePage(frame: Frame, target: DeleteTarget, csrf: string): string {
  return page(frame, `Delete ${target.title}?`, html`<h1>Delete ${target.title}?</h1>
<p>This deletes ${target.what} from the registry. It cannot be undone.</p>
<form method="post" action="${target.action}">
<input type="hidden" name="${csrfFieldName}" value="${csrf}">
<button type="submit">Delete</button>
<a href="${target.back}">Cancel</a>
</form>`);
}

export function deleteRefusedPage(frame: Frame, target: Pick<DeleteTarget, 'repository' | 'title' | 'back'>, reason: string): string {
  return page(frame, `Cannot delete ${target.title}`, html`<h1>Cannot delete ${target.title}</h1>
<p class="alert" role="alert">${reason}</p>
<p><a href="${target.back}">Back</a> · <a href="${repositoryUrl(target.repository)}">${target.repository}</a></p>`);
}
