import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { ScheduledStore } from '../db/scheduled-messages.ts';
import { Scheduler } from '../domain/scheduler.ts';

declare module 'fastify' {
  interface FastifyInstance {
    scheduler: Scheduler;
  }
}

/**
 * Every node polls for due scheduled messages (domain/scheduler.ts) from when it is ready until it
 * closes; the round in flight finishes before the database closes. Stopping one node loses nothing:
 * the others send what it would have.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const scheduler = new Scheduler(new ScheduledStore(app.sql), app.services.messages, app.services.scheduled, {
      nodeId: config.nodeId,
      pollMs: config.scheduler.pollMs,
      batch: config.scheduler.batch,
      log: app.log,
      onRound: (claimed) => {
        app.metrics.schedulerRounds.inc();
        app.metrics.schedulerClaimed.inc(claimed);
      },
      onOutcome: (outcome) => app.metrics.scheduledOutcomes.inc({ outcome }),
      onLag: (seconds) => app.metrics.schedulerLag.observe(Math.max(0, seconds)),
    });
    app.decorate('scheduler', scheduler);
    app.addHook('onReady', async () => scheduler.start());
    // The services' own preClose ran first (registration order): the notifications of the last
    // round's messages are written here.
    app.addHook('preClose', async () => {
      await scheduler.stop();
      await app.services.notifications.idle();
    });
  },
  { name: 'scheduler', dependencies: ['services', 'metrics', 'database'] },
);
