import fp from 'fastify-plugin';
import type { Config } from '../config.ts';

/**
 * Every node sweeps calls on an interval (see CallService.sweep): ring timeouts fire within one
 * interval of their deadline, and this node's live calls stay alive while it runs. A quarter of the
 * shorter of ring timeout and state TTL, between 100 ms and 1 s.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const intervalMs = Math.min(1000, Math.max(100, Math.floor(Math.min(config.calls.ringTimeoutMs, config.calls.stateTtlMs) / 4)));
    let running: Promise<void> = Promise.resolve();
    const tick = async () => {
      try {
        await app.services.calls.sweep();
      } catch (error) {
        app.log.warn({ err: error }, 'calls: sweep failed');
      }
    };
    const timer = setInterval(() => {
      running = running.then(tick);
    }, intervalMs);
    timer.unref();
    app.addHook('preClose', async () => {
      clearInterval(timer);
      await running;
    });
  },
  { name: 'calls', dependencies: ['services'] },
);
