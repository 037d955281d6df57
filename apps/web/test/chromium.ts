// What the browser tests of this folder share: whether they can run here, where screenshots go, how
// Chromium starts (headless, as root, with fake camera and microphone and no permission prompts), and
// the accessibility check of a page as it is.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContextOptions, Page } from 'playwright-core';
import { findNginx } from '@chat/testkit/cluster';
import { findChromium } from '@chat/testkit/executables';

export const NGINX = findNginx();
export const CHROMIUM = findChromium();
/** Empty when the browser tests can run; otherwise why not, for the suite's title. */
export const SKIP = !NGINX ? ' (skipped: no nginx binary; `apt-get install -y nginx`)' : !CHROMIUM ? ' (skipped: no Chromium at /usr/bin/chromium; `apt-get install -y chromium`)' : '';
export const SHOTS = fileURLToPath(new URL('../../../reports/web/', import.meta.url));
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--headless',
  '--disable-gpu',
  '--disable-background-networking',
  // getUserMedia gets a generated picture and tone without a prompt: calls and recordings have real media.
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
];

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * WCAG 2.1 A/AA violations axe-core finds on the page as it is now, as `rule (impact): target` lines.
 * The source goes in through evaluate (DevTools protocol), which the page's CSP does not block.
 */
export async function accessibilityViolations(page: Page): Promise<string[]> {
  await page.evaluate(AXE_SOURCE);
  return page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(options: object): Promise<{ violations: Array<{ id: string; impact: string; nodes: Array<{ target: string[] }> }> }> } }).axe;
    const result = await axe.run({ runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return result.violations.map((violation) => `${violation.id} (${violation.impact}): ${violation.nodes.map((node) => node.target.join(' ')).join(', ')}`);
  });
}

/**
 * The chat page at `url` in a context of its own (`options` add to a 1100×800 viewport), signed in
 * with `name` and connected; the page's uncaught errors collect in `errors`.
 */
export async function signedIn(browser: Browser, url: string, name: string, options: BrowserContextOptions = {}): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, ...options });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.goto(`${url}/`);
  await page.getByLabel('Your name').fill(name);
  await page.getByLabel('Your name').press('Enter');
  await page.locator('#connection[data-state="online"]').waitFor();
  return { page, errors };
}
