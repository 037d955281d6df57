// What the browser tests of this folder share: whether they can run here, where screenshots go, and
// how Chromium starts (headless, as root, with fake camera and microphone and no permission prompts).
import { fileURLToPath } from 'node:url';
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
