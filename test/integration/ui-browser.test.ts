// The web UI in a real headless chromium: sign in, browse to a skopeo-pushed tag, copy, delete, tokens, sign out, phone width, keyboard, no cache.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { saveScreenshot, signIn, startBrowser, type TestBrowser } from '../helpers/browser.js';
import { eventually } from '../helpers/processes.js';
import { inspectWithCreds, passwords, startUiGateway, type UiGateway } from '../helpers/ui-fixture.js';

const state = {} as { ui: UiGateway; browser: TestBrowser; alice: Page; bob: Page; contexts: BrowserContext[] };

async function context(options: Parameters<TestBrowser['newContext']>[0] = {}): Promise<BrowserContext> {
  const created = await state.browser.newContext(options);
  created.setDefaultTimeout(20_000);
  state.contexts.push(created);
  return created;
}

const url = (target: string) => `${state.ui.origin}${target}`;
const rowLink = (page: Page, name: string) => page.getByRole('row').getByRole('link', { name, exact: true });
/** The header's "Sign in" link (the signed-out state). */
const signInLink = (page: Page) => page.getByRole('banner').getByRole('link', { name: 'Sign in', exact: true });

describe('web UI in a browser', () => {
  before(async () => {
    state.contexts = [];
    state.ui = await startUiGateway();
    await state.ui.push('team/app:v1', 'team/app:v2', 'team/app:1.2.0', 'team/app:1.10.0', 'team/app:release-1', 'secret/db:v1', 'public/hello:latest');
    state.browser = await startBrowser();
    state.alice = await signIn(await context(), state.ui.origin, 'alice', passwords.alice);
    state.bob = await signIn(await context(), state.ui.origin, 'bob', passwords.bob);
    // app.js may ask before a delete or a revoke: say yes, as a user would.
    for (const page of [state.alice, state.bob]) page.on('dialog', (dialog) => void dialog.accept());
  });
  after(async () => {
    for (const created of state.contexts ?? []) await created.close().catch(() => {});
    await state.browser?.close();
    await state.ui?.close();
  });

  test('an anonymous visitor sees only public images and a Sign in link', async () => {
    const page = await (await context()).newPage();
    await page.goto(url('/'));
    await rowLink(page, 'public/hello').waitFor();
    assert.equal(await rowLink(page, 'team/app').count(), 0);
    assert.equal(await rowLink(page, 'secret/db').count(), 0);
    await signInLink(page).click();
    await page.getByLabel('Password').waitFor();
    await saveScreenshot(page, 'sign-in');
  });

  test('alice browses from the list to a tag pushed by skopeo and copies its pull command', async () => {
    const page = state.alice;
    await page.goto(url('/'));
    for (const column of ['Repository', 'Tags', 'Last push']) await page.getByRole('columnheader', { name: column, exact: true }).waitFor();
    await page.getByText(/Page 1 of 1/).waitFor();
    await saveScreenshot(page, 'list');
    await rowLink(page, 'team/app').click();
    await page.getByRole('heading', { level: 1, name: 'team/app', exact: true }).waitFor();
    for (const column of ['Tag', 'Digest', 'Size', 'Created', 'Platforms']) await page.getByRole('columnheader', { name: column, exact: true }).waitFor();
    const tags = await page.getByRole('row').getByRole('link').allTextContents();
    assert.ok(tags.indexOf('1.10.0') < tags.indexOf('1.2.0') && tags.indexOf('1.2.0') >= 0, `semver order, newest first: ${tags.join(' ')}`);
    await saveScreenshot(page, 'repository');

    await rowLink(page, 'v1').click();
    await page.getByRole('heading', { level: 1, name: 'team/app:v1', exact: true }).waitFor();
    for (const section of ['Manifest', 'Configuration', 'Layers', 'Referrers']) await page.getByRole('heading', { level: 2, name: section, exact: true }).waitFor();
    await page.getByText(state.ui.image.layerDigests[0]!).first().waitFor();
    await page.getByText(state.ui.image.manifestDigest).first().waitFor();
    const pull = `docker pull ${state.ui.gw.host}/team/app:v1`;
    assert.equal(await page.getByLabel('Pull command').inputValue(), pull);
    assert.equal(await page.getByLabel('Pull command').getAttribute('readonly'), '');
    await saveScreenshot(page, 'tag');

    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: state.ui.origin });
    await page.evaluate(() => navigator.clipboard.writeText('nothing copied yet'));
    await page.getByRole('button', { name: 'Copy pull command' }).click();
    assert.ok(await eventually(async () => (await page.evaluate(() => navigator.clipboard.readText())) === pull, 50), 'the clipboard holds the pull command');
  });

  test('the keyboard reaches the search box, and Enter searches', async () => {
    const page = state.alice;
    await page.goto(url('/'));
    const search = page.getByLabel('Search repositories');
    let reached = false;
    for (let presses = 0; presses < 25 && !reached; presses += 1) {
      await page.keyboard.press('Tab');
      reached = await search.evaluate((element) => element === document.activeElement);
    }
    assert.ok(reached, 'Tab reaches "Search repositories"');
    await page.keyboard.type('app');
    await page.keyboard.press('Enter');
    await page.waitForURL((address) => address.searchParams.get('q') === 'app');
    await rowLink(page, 'team/app').waitFor();
    assert.equal(await rowLink(page, 'public/hello').count(), 0);
    assert.equal(await search.inputValue(), 'app');
  });

  test('on a 390 px wide phone screen the list fits without sideways scrolling', async () => {
    const phone = await context({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const page = await signIn(phone, state.ui.origin, 'alice', passwords.alice);
    await page.goto(url('/'));
    await rowLink(page, 'team/app').waitFor();
    await saveScreenshot(page, 'list-phone');
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `page is ${width} px wide`);
  });

  test('with the browser cache off every page and asset loads, and pages are never stored', async () => {
    const fresh = await context();
    const page = await fresh.newPage();
    const cdp = await fresh.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    const assets: { url: string; status: number }[] = [];
    const documents: { url: string; cacheControl: string | undefined }[] = [];
    page.on('response', (response) => {
      const type = response.request().resourceType();
      if (type === 'stylesheet' || type === 'script') assets.push({ url: response.url(), status: response.status() });
      if (type === 'document') documents.push({ url: response.url(), cacheControl: response.headers()['cache-control'] });
    });
    for (const target of ['/sign-in', '/', '/r/public/hello', '/r/public/hello/-/tags/latest', '/r/public/hello/-/tags/latest']) {
      await page.goto(url(target));
      await page.getByRole('heading', { level: 1 }).first().waitFor();
    }
    assert.ok(assets.some((asset) => asset.url.endsWith('/assets/app.css')), 'the stylesheet loads');
    assert.deepEqual(assets.filter((asset) => asset.status !== 200), [], 'every asset answers 200');
    const styled = await page.evaluate(() => [...document.styleSheets].some((sheet) => sheet.href?.endsWith('/assets/app.css') && sheet.cssRules.length > 0));
    assert.ok(styled, 'the stylesheet applies');
    for (const doc of documents) assert.match(doc.cacheControl ?? '', /no-store/, `${doc.url} must not be stored`);
  });

  test('alice deletes a tag after a confirmation, and the registry no longer has it', async () => {
    const page = state.alice;
    const api = await state.ui.api('team/app');
    assert.ok(await api.digestOf('team/app', 'v2'));
    await page.goto(url('/r/team/app'));
    await page.getByRole('link', { name: 'Delete v2', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Delete team/app:v2?', exact: true }).waitFor();
    assert.equal(await api.digestOf('team/app', 'v2') !== undefined, true, 'nothing is deleted before the confirmation');
    const [answer] = await Promise.all([
      page.waitForResponse((response) => response.request().method() === 'POST' && response.url().endsWith('/r/team/app/-/tags/v2/delete')),
      page.getByRole('button', { name: 'Delete', exact: true }).click(),
    ]);
    assert.ok(answer.status() < 400, `the delete answers ${answer.status()}`);
    assert.equal(await api.digestOf('team/app', 'v2'), undefined, 'team/app:v2 is gone from the registry');
    assert.ok(await api.digestOf('team/app', 'v1'), 'the other tags stay');
    await page.goto(url('/r/team/app'));
    await rowLink(page, 'v1').waitFor();
    assert.equal(await rowLink(page, 'v2').count(), 0);
  });

  test('an immutable tag is not deleted, and the page says why', async () => {
    const page = state.alice;
    const api = await state.ui.api('team/app');
    const response = await page.goto(url('/r/team/app/-/tags/release-1/delete'));
    const button = page.getByRole('button', { name: 'Delete', exact: true });
    if ((await button.count()) > 0) {
      await button.click();
      await page.getByRole('alert').waitFor();
    } else {
      assert.equal(response?.status(), 403);
    }
    assert.match(await page.getByRole('alert').innerText(), /The tag is immutable/);
    assert.ok(await api.digestOf('team/app', 'release-1'), 'release-1 stays');
  });

  test('bob, who may only pull, gets no delete links, and forged deletes are refused with the reason', async () => {
    const page = state.bob;
    const api = await state.ui.api('team/app');
    await page.goto(url('/r/team/app'));
    await rowLink(page, 'v1').waitFor();
    assert.equal(await page.getByRole('link', { name: /^Delete/ }).count(), 0);
    await rowLink(page, 'v1').click();
    await page.getByLabel('Pull command').waitFor();
    assert.equal(await page.getByRole('link', { name: 'Delete tag' }).count(), 0);

    const direct = await page.goto(url('/r/team/app/-/tags/v1/delete'));
    assert.equal(direct?.status(), 403);
    assert.match(await page.getByRole('alert').innerText(), /You may not delete in team\/app/);

    // bob's own session and CSRF token (from the sign-out form), aimed at the delete URL.
    await page.goto(url('/r/team/app'));
    const [forged] = await Promise.all([
      page.waitForResponse((response) => response.url().endsWith('/r/team/app/-/tags/v1/delete') && response.request().method() === 'POST'),
      page.getByRole('button', { name: 'Sign out' }).evaluate((button, action) => {
        const form = (button as HTMLButtonElement).form!;
        form.action = action;
        form.submit();
      }, url('/r/team/app/-/tags/v1/delete')),
    ]);
    assert.equal(forged.status(), 403);
    await page.getByRole('alert').waitFor();
    assert.match(await page.getByRole('alert').innerText(), /You may not delete in team\/app/);

    // Without the CSRF token (a cross-site form post).
    const crossSite = await page.context().request.post(url('/r/team/app/-/tags/v1/delete'), { form: {}, headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } });
    assert.equal(crossSite.status(), 403);
    assert.ok(await api.digestOf('team/app', 'v1'), 'team/app:v1 stays');
  });

  test('a token made on the tokens page works with skopeo within its scope, and stops when revoked', async () => {
    const page = state.alice;
    await page.goto(url('/tokens'));
    await page.getByRole('heading', { level: 1, name: 'Access tokens' }).waitFor();
    await page.getByLabel('Repositories').fill('team/*');
    await page.getByRole('checkbox', { name: 'pull', exact: true }).check();
    await page.getByLabel('Expires in').selectOption('7d');
    await page.getByLabel('Description').fill('browser test');
    await page.getByRole('button', { name: 'Create token' }).click();
    const shown = page.getByLabel('New token');
    await shown.waitFor();
    const token = await shown.inputValue();
    const id = /^gwt_([a-z2-7]{12})_[A-Za-z0-9_-]{43}$/.exec(token)?.[1];
    assert.ok(id, `a token is shown: ${token.slice(0, 8)}...`);
    await saveScreenshot(page, 'tokens');

    const v1 = await (await state.ui.api('team/app')).digestOf('team/app', 'v1');
    assert.equal(await inspectWithCreds(state.ui.gw, state.ui.work, `alice:${token}`, 'team/app:v1'), v1);
    await assert.rejects(inspectWithCreds(state.ui.gw, state.ui.work, `alice:${token}`, 'secret/db:v1'), 'outside the token scope');

    await page.goto(url('/tokens'));
    assert.equal(await page.getByLabel('New token').count(), 0, 'the token is shown only once');
    await page.getByRole('button', { name: `Revoke ${id}`, exact: true }).click();
    await page.waitForLoadState();
    const refused = await eventually(() => inspectWithCreds(state.ui.gw, state.ui.work, `alice:${token}`, 'team/app:v1').then(() => false, () => true), 30);
    assert.ok(refused, 'skopeo is refused once the token is revoked');
  });

  test('signing out shows the signed-out state, and the old cookie no longer works', async () => {
    const own = await context();
    const page = await signIn(own, state.ui.origin, 'alice', passwords.alice);
    const cookies = await own.cookies();
    assert.ok(cookies.some((cookie) => cookie.httpOnly && cookie.secure && cookie.sameSite === 'Strict'), 'an HttpOnly, Secure, SameSite=Strict session cookie');
    await page.goto(url('/'));
    await rowLink(page, 'secret/db').waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signInLink(page).waitFor();
    await page.goto(url('/'));
    await rowLink(page, 'public/hello').waitFor();
    assert.equal(await page.getByText('Signed in as').count(), 0);
    assert.equal(await rowLink(page, 'secret/db').count(), 0);

    const replay = await context();
    await replay.addCookies(cookies);
    const again = await replay.newPage();
    await again.goto(url('/'));
    await signInLink(again).waitFor();
    assert.equal(await rowLink(again, 'secret/db').count(), 0);
    const secret = await again.goto(url('/r/secret/db'));
    assert.equal(secret?.status(), 404);
    await again.goto(url('/tokens'));
    assert.equal(await again.getByRole('button', { name: 'Create token' }).count(), 0);
  });
});
