// The page's uploads in a real Chromium with a fake microphone: attach an image, record a voice
// note, and the other user sees the image and plays the voice note. One node behind the
// repository's nginx (its /v1/blobs/ location carries the bytes), disk storage in a temporary folder.
import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '@chat/testkit/cluster';
import { testEnv } from '@chat/testkit/nodes';
import { buildWeb } from '../src/build.ts';
import { CHROMIUM, CHROMIUM_ARGS, SHOTS, SKIP, signedIn } from './chromium.ts';

/** What the test reads of an image and an audio element in the page (this file compiles without the DOM library). */
type ImageFields = { complete: boolean; naturalWidth: number; naturalHeight: number };
type AudioFields = { play(): Promise<void>; pause(): void; currentTime: number; error: { code: number } | null };

describe.skipIf(SKIP !== '')(`uploads on the browser page${SKIP}`, () => {
  let cluster: Cluster;
  let browser: Browser;
  let uploadDir: string;
  const run = Date.now().toString(36);

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    await buildWeb();
    uploadDir = await mkdtemp(join(tmpdir(), 'chat-page-uploads-'));
    cluster = await startCluster({ nodes: 1, env: testEnv({ LOG_LEVEL: 'warn', DEV_TOKENS: 'true', SHUTDOWN_TIMEOUT_MS: '3000', STORAGE: 'disk', UPLOAD_DIR: uploadDir }) });
    browser = await chromium.launch({ executablePath: CHROMIUM!, args: [...CHROMIUM_ARGS, '--autoplay-policy=no-user-gesture-required'] });
  });
  afterAll(async () => {
    await browser?.close();
    await cluster?.stop();
    if (uploadDir) await rm(uploadDir, { recursive: true, force: true });
  });

  const signIn = (name: string) => signedIn(browser, cluster.url, name, { permissions: ['microphone'] });

  it('attaches an image with a preview, and records a voice note the other user plays', async () => {
    const alice = await signIn(`Alice ${run}`);
    const bob = await signIn(`Bob ${run}`);
    await alice.page.getByLabel('Chat with').fill(`Bob ${run}`);
    await alice.page.getByRole('button', { name: 'Start' }).click();
    await alice.page.locator('#conversation-title', { hasText: `Bob ${run}` }).waitFor();

    // Attach: an image chosen in the file picker is uploaded, sent, and shown to both as a thumbnail.
    const image = await sharp({ create: { width: 800, height: 600, channels: 3, background: '#2a7' } })
      .png()
      .toBuffer();
    await alice.page.locator('#attach-input').setInputFiles({ name: 'garden.png', mimeType: 'image/png', buffer: image });
    await bob.page
      .locator('.conversation-item')
      .filter({ hasText: `Alice ${run}` })
      .click();
    const preview = bob.page.locator('#messages .attachment img.attachment-image[alt="garden.png"]');
    await preview.waitFor();
    await expect
      .poll(() =>
        preview.evaluate((element) => {
          const img = element as unknown as ImageFields;
          return [img.complete, img.naturalWidth, img.naturalHeight];
        }),
      )
      .toEqual([true, 320, 240]);
    await alice.page.locator('#messages .message.mine img.attachment-image').waitFor();

    // Record and play: a voice note from the fake microphone, sent on Stop.
    const record = alice.page.getByRole('button', { name: 'Record' });
    await record.click();
    await alice.page.locator('#record-button[aria-pressed="true"]').waitFor();
    await alice.page.waitForTimeout(1500);
    await alice.page.getByRole('button', { name: 'Stop' }).click();
    const player = bob.page.locator('#messages .attachment-audio audio');
    await player.waitFor();
    const played = await player.evaluate(async (element) => {
      const audio = element as unknown as AudioFields;
      await audio.play();
      const start = Date.now();
      while (audio.currentTime < 0.3 && Date.now() - start < 10_000) await new Promise((resolve) => setTimeout(resolve, 50));
      audio.pause();
      return { currentTime: audio.currentTime, error: audio.error?.code ?? null };
    });
    expect(played.error).toBeNull();
    expect(played.currentTime).toBeGreaterThanOrEqual(0.3);
    await bob.page.screenshot({ path: `${SHOTS}uploads.png` });

    expect(alice.errors).toEqual([]);
    expect(bob.errors).toEqual([]);
  });
});
