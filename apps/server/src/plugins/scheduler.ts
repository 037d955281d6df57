import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { ScheduledStore } from '../db/scheduled-messages.ts';
import { ScheduledRetention } from '../domain/scheduled-retention.ts';
import { Scheduler } from '../domain/scheduler.ts';
import { startPeriodicSweep } from './periodic-sweep.ts';

declare module 'fastify' {
  interface FastifyInstance {
    scheduler: Scheduler;
  }
}

/**
 * Every node polls for due scheduled messages (domain/scheduler.ts) from when it is ready until it
 * closes; the round in flight finishes before the database closes. Stopping one node loses nothing:
 * the others send what it would have. Every node also deletes finished rows past their retention
 * (domain/scheduled-retention.ts) every quarter of SCHEDULED_RETENTION_HOURS, at most every 10
 * minutes: its own timer, not the poll loop, so polling costs no extra statement.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const store = new ScheduledStore(app.sql);
    const scheduler = new Scheduler(store, app.services.messages, app.services.scheduled, {
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

    const retention = new ScheduledRetention(store, { retentionMs: config.scheduler.retentionMs, onSwept: (count) => app.metrics.scheduledSwept.inc(count) });
    const sweeper = startPeriodicSweep(app.log, {
      ttlMs: config.scheduler.retentionMs,
      sweep: () => retention.sweep(),
      swept: 'scheduler: deleted finished scheduled messages past their retention',
      failed: 'scheduler: retention sweep failed; the next one retries',
    });

    // The services' own preClose ran first (registration order): the notifications of the last
    // round's messages are written here.
    app.addHook('preClose', async () => {
      await Promise.all([scheduler.stop(), retention.stop(), sweeper.stop()]);
      await app.services.notifications.idle();
    });
  },
  { name: 'scheduler', dependencies: ['services', 'metrics', 'database'] },
);
