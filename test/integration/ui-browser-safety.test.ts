// The web UI in a real headless chromium against hostile content (script in labels, history, annotations, the URL) and hidden repositories.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { saveScreenshot, signIn, startBrowser, type TestBrowser } from '../helpers/browser.js';
import { artifact } from '../helpers/referrers.js';
import { RegistryApi } from '../helpers/registry-api.js';
import { fetchToken } from '../helpers/gateway.js';
import { skopeoCopy } from '../helpers/skopeo.js';
import { passwords, startUiGateway, type UiGateway } from '../helpers/ui-fixture.js';
import { breakoutText, imgText, scriptText, writeHostileImage, type HostileImage } from '../helpers/ui-seed.js';

const state = {} as { ui: UiGateway; browser: TestBrowser; contexts: BrowserContext[]; hostile: HostileImage; bob: Page; anonymous: Page; seen: Seen };

interface Seen {
  dialogs: string[];
  /** Console lines about the Content-Security-Policy refusing something: an injected element got through. */
  csp: string[];
  errors: string[];
}

/** Records every dialog (and dismisses it), script error and CSP refusal on `page`. */
function watch(page: Page, seen: Seen): Page {
  page.on('dialog', (dialog) => {
    seen.dialogs.push(dialog.message());
    void dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => seen.errors.push(error.message));
  page.on('console', (message) => {
    if (/Content.Security.Policy/i.test(message.text())) seen.csp.push(message.text());
  });
  return page;
}

/** No element the page did not mean to have: only the gateway's own script, no img/svg/iframe, no inline handlers. */
async function assertNothingInjected(page: Page): Promise<void> {
  const found = await page.evaluate(() => ({
    scripts: [...document.scripts].map((script) => script.getAttribute('src') ?? `inline: ${script.textContent}`),
    foreign: document.querySelectorAll('img[src="x"], iframe, object, embed').length,
    handlers: [...document.querySelectorAll('*')].flatMap((element) => [...element.attributes].filter((attribute) => /^on/i.test(attribute.name)).map((attribute) => `${element.tagName} ${attribute.name}`)),
  }));
  assert.deepEqual(found.scripts.filter((src) => src !== '/assets/app.js'), [], 'only /assets/app.js');
  assert.equal(found.foreign, 0, 'no injected img, svg or iframe');
  assert.deepEqual(found.handlers, [], 'no inline event handlers');
  assert.deepEqual(state.seen, { dialogs: [], csp: [], errors: [] });
}

async function context(): Promise<BrowserContext> {
  const created = await state.browser.newContext();
  created.setDefaultTimeout(20_000);
  state.contexts.push(created);
  return created;
}

const url = (target: string) => `${state.ui.origin}${target}`;
const rowLink = (page: Page, name: string) => page.getByRole('row').getByRole('link', { name, exact: true });

describe('web UI in a browser: hostile content and hidden repositories', () => {
  before(async () => {
    state.contexts = [];
    state.seen = { dialogs: [], csp: [], errors: [] };
    state.ui = await startUiGateway();
    await state.ui.push('team/app:v1', 'secret/db:v1', 'public/hello:latest');
    state.hostile = await writeHostileImage(path.join(state.ui.work, 'hostile'));
    await skopeoCopy({ ...state.ui.alice, from: state.hostile.reference, to: `docker://${state.ui.gw.host}/evil/x:${state.hostile.tag}` });
    // A referrer (e.g. an SBOM) whose annotations carry script too.
    const api = new RegistryApi(state.ui.gw, await fetchToken(state.ui.gw, 'alice', passwords.alice, ['repository:evil/x:pull,push']));
    await api.uploadBlob('evil/x', Buffer.from('{}'));
    const subject = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: state.hostile.manifestDigest, size: state.hostile.manifestSize };
    const referrer = artifact(subject, { artifactType: 'application/vnd.example.sbom.v1+json', annotations: { [scriptText]: imgText } });
    const pushed = await api.putManifest('evil/x', referrer.descriptor.digest, referrer.body);
    assert.equal(pushed.status, 201, pushed.body);
    state.browser = await startBrowser();
    state.bob = watch(await signIn(await context(), state.ui.origin, 'bob', passwords.bob), state.seen);
    state.anonymous = watch(await (await context()).newPage(), state.seen);
  });
  after(async () => {
    for (const created of state.contexts ?? []) await created.close().catch(() => {});
    await state.browser?.close();
    await state.ui?.close();
  });

  test('labels, env, history and annotations with script are shown as text on the tag page', async () => {
    const page = state.bob;
    await page.goto(url('/r/evil/x'));
    await rowLink(page, state.hostile.tag).click();
    await page.getByRole('heading', { level: 1, name: `evil/x:${state.hostile.tag}`, exact: true }).waitFor();
    assert.equal(await page.getByLabel('Pull command').inputValue(), `docker pull ${state.ui.gw.host}/evil/x:${state.hostile.tag}`);
    const text = await page.locator('body').innerText();
    for (const shown of [scriptText, imgText, breakoutText, 'EVIL']) assert.ok(text.includes(shown), `shown literally: ${shown}`);
    const configuration = page.getByRole('table').filter({ hasText: 'org.opencontainers.image.title' });
    await configuration.getByRole('cell', { name: breakoutText, exact: true }).first().waitFor();
    await page.getByRole('cell', { name: scriptText, exact: true }).first().waitFor();
    await page.getByText('application/vnd.example.sbom.v1+json').first().waitFor();
    await saveScreenshot(page, 'tag-hostile');
    await assertNothingInjected(page);
  });

  test('script in the search box, the address and the repository page stays text', async () => {
    const page = state.bob;
    await page.goto(url(`/?q=${encodeURIComponent(scriptText)}`));
    assert.equal(await page.getByLabel('Search repositories').inputValue(), scriptText);
    await assertNothingInjected(page);
    await page.goto(url(`/?q=${encodeURIComponent(breakoutText)}&page=${encodeURIComponent(imgText)}`));
    assert.equal(await page.getByLabel('Search repositories').inputValue(), breakoutText);
    await assertNothingInjected(page);
    for (const target of [`/r/${encodeURIComponent(scriptText)}`, `/r/evil/${encodeURIComponent(imgText)}/-/tags/${encodeURIComponent(scriptText)}`, `/r/evil/x/-/manifests/${encodeURIComponent(imgText)}`]) {
      const response = await page.goto(url(target));
      assert.ok([400, 404].includes(response?.status() ?? 0), `${target}: ${response?.status()}`);
      await assertNothingInjected(page);
    }
    await page.goto(url('/r/evil/x'));
    await rowLink(page, state.hostile.tag).waitFor();
    await assertNothingInjected(page);
  });

  test('bob never sees secret/db: not in the list, not in a search, not by address', async () => {
    const page = state.bob;
    await page.goto(url('/'));
    await rowLink(page, 'team/app').waitFor();
    assert.equal(await rowLink(page, 'secret/db').count(), 0);
    for (const search of ['secret', 'db', 's']) {
      await page.getByLabel('Search repositories').fill(search);
      await page.getByRole('button', { name: 'Search', exact: true }).click();
      await page.waitForURL((address) => address.searchParams.get('q') === search);
      assert.equal(await rowLink(page, 'secret/db').count(), 0, `search "${search}"`);
      assert.doesNotMatch(await page.locator('main, body').first().innerText(), /secret\/db/);
    }
    await assertHiddenLikeMissing(page, 'secret/db');
  });

  test('an anonymous visitor sees neither secret/db nor team/app, by list or by address', async () => {
    const page = state.anonymous;
    await page.goto(url('/'));
    await rowLink(page, 'public/hello').waitFor();
    assert.equal(await rowLink(page, 'team/app').count(), 0);
    assert.equal(await rowLink(page, 'secret/db').count(), 0);
    await assertHiddenLikeMissing(page, 'secret/db');
    await assertHiddenLikeMissing(page, 'team/app');
  });
});

/** Every page of a hidden repository answers exactly like a repository that does not exist: 404 "Not found". */
async function assertHiddenLikeMissing(page: Page, repository: string): Promise<void> {
  const digest = state.ui.image.manifestDigest;
  for (const suffix of ['', '/-/tags/v1', `/-/manifests/${digest}`, '/-/tags/v1/delete', `/-/manifests/${digest}/delete`]) {
    const answers: { status: number; h1: string; text: string }[] = [];
    for (const name of [repository, 'nothing/here']) {
      const response = await page.goto(url(`/r/${name}${suffix}`));
      const h1 = await page.getByRole('heading', { level: 1 }).first().innerText();
      const text = (await page.locator('body').innerText()).replaceAll(name, 'NAME');
      answers.push({ status: response?.status() ?? 0, h1, text });
    }
    assert.equal(answers[0]!.status, 404, `${repository}${suffix}`);
    assert.equal(answers[0]!.h1, 'Not found');
    assert.deepEqual(answers[0], answers[1], `${repository}${suffix} answers like a missing repository`);
  }
}
