import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { ScheduledStore } from '../db/scheduled-messages.ts';
import { ScheduledRetention } from '../domain/scheduled-retention.ts';
import { Scheduler } from '../domain/scheduler.ts';

declare module 'fastify' {
  interface FastifyInstance {
    scheduler: Scheduler;
  }
}

/** The longest pause between two retention sweeps; shorter when SCHEDULED_RETENTION_HOURS is short. */
const MAX_SWEEP_INTERVAL_MS = 10 * 60_000;

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
    const every = Math.max(1000, Math.min(MAX_SWEEP_INTERVAL_MS, config.scheduler.retentionMs / 4));
    const sweep = () =>
      void retention.sweep().then(
        (deleted) => {
          if (deleted > 0) app.log.info({ deleted }, 'scheduler: deleted finished scheduled messages past their retention');
        },
        (error: unknown) => app.log.warn({ err: error }, 'scheduler: retention sweep failed; the next one retries'),
      );
    // Jittered, so nodes started together do not sweep in step.
    const timer = setInterval(sweep, every * (0.75 + Math.random() / 2));
    timer.unref();

    // The services' own preClose ran first (registration order): the notifications of the last
    // round's messages are written here.
    app.addHook('preClose', async () => {
      clearInterval(timer);
      await Promise.all([scheduler.stop(), retention.stop()]);
      await app.services.notifications.idle();
    });
  },
  { name: 'scheduler', dependencies: ['services', 'metrics', 'database'] },
);
