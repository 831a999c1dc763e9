// Starts Debian's headless chromium through playwright-core (never a downloaded browser) and saves screenshots as test artifacts.

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core';

export const chromiumPath = '/usr/bin/chromium';

/** No sandbox (tests may run as root), and nothing that talks to the network on its own. */
export const chromiumArgs = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** test-artifacts/ui/ at the top of the checkout (dist/test/helpers -> ../../..). */
export const screenshotDir = fileURLToPath(new URL('../../../test-artifacts/ui/', import.meta.url));

export interface TestBrowser {
  browser: Browser;
  /** A new context (its own cookies and cache) that accepts the test gateway's certificate. */
  newContext(options?: BrowserContextOptions): Promise<BrowserContext>;
  close(): Promise<void>;
}

/**
 * One headless chromium. Playwright gives it a fresh temp profile (removed on close); HOME points at
 * a temp folder too, so nothing lands in the real home. close() stops it and removes both.
 */
export async function startBrowser(): Promise<TestBrowser> {
  const home = await mkdtemp(path.join(os.tmpdir(), 'gateway-chromium-'));
  let browser: Browser;
  try {
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: chromiumArgs,
      env: { ...process.env, HOME: home },
      timeout: 60_000,
    });
  } catch (error) {
    await rm(home, { recursive: true, force: true });
    throw error;
  }
  return {
    browser,
    newContext: (options = {}) => browser.newContext({ ignoreHTTPSErrors: true, ...options }),
    async close() {
      await browser.close().catch(() => {});
      await rm(home, { recursive: true, force: true });
    },
  };
}

/** Saves a full-page screenshot as test-artifacts/ui/NAME.png (the folder is made when missing) and returns its path. */
export async function saveScreenshot(page: Page, name: string): Promise<string> {
  await mkdir(screenshotDir, { recursive: true });
  const file = path.join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Signs in through the form at /sign-in (labels "Username", "Password", button "Sign in") and waits for the header to say so. */
export async function signIn(context: BrowserContext, origin: string, user: string, password: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${origin}/sign-in`);
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const signedIn = page.getByText(`Signed in as ${user}`);
  await signedIn.or(page.getByRole('alert')).first().waitFor();
  if (!(await signedIn.isVisible())) throw new Error(`sign-in as ${user} refused at ${page.url()}: ${await page.getByRole('alert').first().innerText()}`);
  return page;
}
