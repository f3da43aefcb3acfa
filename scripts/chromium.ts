// Headless Chromium (Debian's `chromium`) through playwright-core, for the HTML report's test and
// screenshots. Offline: no first-run, sync, update or background network, a fresh profile each time.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.FNCTL_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const CHROMIUM_MISSING = `${CHROMIUM_PATH} is missing: install Debian's chromium with \`apt-get install -y chromium\` (.ci/run does)`;

export function hasChromium(): boolean {
  return existsSync(CHROMIUM_PATH);
}

export interface Browser {
  context: BrowserContext;
  /** A folder of the browser's own, removed by close(): the profile and the pages written to open. */
  dir: string;
  /** Writes HTML to a file and opens it in a new page, as a user opening the report would. */
  open(html: string, name: string, setup?: (page: Page) => Promise<void>): Promise<Page>;
  close(): Promise<void>;
}

export async function launchChromium(viewport = { width: 1200, height: 900 }): Promise<Browser> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fnctl-chromium-'));
  const context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport,
    deviceScaleFactor: 1,
    offline: true,
  });
  return {
    context,
    dir,
    async open(html, name, setup) {
      const file = path.join(dir, `${name}.html`);
      writeFileSync(file, html);
      const page = await context.newPage();
      await setup?.(page);
      await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
      await page.waitForFunction(() => document.documentElement.dataset.charts !== undefined, null, { timeout: 10_000 });
      return page;
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
