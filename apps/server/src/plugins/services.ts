import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { CallMilestones } from '../domain/call-milestones.ts';
import { CallService } from '../domain/calls.ts';
import { ConversationService } from '../domain/conversations.ts';
import { MessageService } from '../domain/messages.ts';
import { NotificationInbox } from '../domain/notification-inbox.ts';
import { NotificationWriter } from '../domain/notification-writer.ts';
import { PresenceService } from '../domain/presence.ts';
import { ReceiptService } from '../domain/receipts.ts';
import { ScheduledMessageService } from '../domain/scheduled-messages.ts';
import { SearchService } from '../domain/search.ts';
import { ThreadService } from '../domain/threads.ts';
import { SyncService } from '../domain/sync.ts';
import { TypingService } from '../domain/typing.ts';
import { UserService } from '../domain/users.ts';
import type { Fanout } from '../domain/fanout.ts';
import { SocketFanout } from '../transport/socket/fanout.ts';
import { RoutedFanout } from '../transport/socket/routed-fanout.ts';
import { WebhookSender } from '../transport/webhook.ts';

/** The transport-free domain services; REST routes and socket handlers both call these. */
export interface Services {
  users: UserService;
  conversations: ConversationService;
  messages: MessageService;
  receipts: ReceiptService;
  sync: SyncService;
  search: SearchService;
  threads: ThreadService;
  scheduled: ScheduledMessageService;
  typing: TypingService;
  presence: PresenceService;
  /** Writes notifications in the background (what producers report; `idle()` for shutdown and tests). */
  notifications: NotificationWriter;
  /** The recipient's notifications: list, mark read, delete, mute. */
  notificationInbox: NotificationInbox;
  calls: CallService;
  /** The calls_unlocked milestone, checked in the background after messages commit. */
  callMilestones: CallMilestones;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const fanout: Fanout = app.nodeRouting
      ? new RoutedFanout(app.io, app.nodeRouting, {
          log: app.log,
          onFrames: (direction, count) => app.metrics.fanoutFrames.inc({ direction }, count),
          onPublishFailed: (error) => {
            app.metrics.clusterPublishFailures.inc();
            app.log.warn({ err: error }, 'fan-out to other nodes failed; local sockets still served');
          },
        })
      : new SocketFanout(app.io, app.log, () => app.metrics.fanoutFrames.inc({ direction: 'local' }));
    const webhook = config.notifyWebhook
      ? new WebhookSender(config.notifyWebhook, {
          onOutcome: (outcome) => app.metrics.webhookDeliveries.inc({ outcome }),
          onError: (error, context) => app.log.warn({ err: error, ...context }, 'notification webhook attempt failed'),
        })
      : null;
    const notifications = new NotificationWriter(app.db, app.state.presence, fanout, { push: webhook, log: app.log });
    const callMilestones = new CallMilestones(app.db, fanout, { minMessages: config.calls.minMessages, log: app.log });
    const messages = new MessageService(app.db, app.sql, fanout, {
      maxBodyLength: config.limits.messageBodyLength,
      onBatch: (count) => app.metrics.writeBatchSize.observe({ writer: 'messages' }, count),
      attachments: (senderId, conversationId, attachments) => app.uploads.resolveAttachments(senderId, conversationId, attachments),
      log: app.log,
    });
    messages.onCommitted((message, memberIds) => notifications.messageSent(message, memberIds));
    messages.onCommitted((message) => callMilestones.committed(message));
    messages.onReacted((message, actorId, emoji) => notifications.reacted(message, actorId, emoji));
    app.decorate('services', {
      users: new UserService(app.sql),
      conversations: new ConversationService(app.db, fanout, notifications),
      messages,
      receipts: new ReceiptService(app.db, app.sql, fanout, { onBatch: (reports) => app.metrics.writeBatchSize.observe({ writer: 'receipts' }, reports) }),
      sync: new SyncService(app.db),
      search: new SearchService(app.db),
      threads: new ThreadService(app.db, fanout),
      scheduled: new ScheduledMessageService(app.db, fanout, { maxAheadDays: config.scheduler.maxAheadDays, maxBodyLength: config.limits.messageBodyLength }),
      presence: new PresenceService(app.db, app.state.presence, fanout, {
        // Once per outage, not per user: the rest wait in the same queue.
        onDeferred: (error, pending) => {
          if (pending === 1) app.log.warn({ err: error }, 'presence: announcements wait for PostgreSQL (the contacts query failed); the presence tick retries them');
        },
      }),
      typing: new TypingService(app.db, app.state.typing, fanout, { ttlMs: config.typing.ttlMs }),
      notifications,
      notificationInbox: new NotificationInbox(app.db, fanout),
      calls: new CallService(app.db, app.state.calls, app.state.presence, fanout, notifications, webhook, config.calls),
      callMilestones,
    });
    // Before the database closes: notifications and milestones reported by the last requests are
    // written, then webhook attempts in flight finish (each bounded by its timeout); queued retries
    // are dropped.
    app.addHook('preClose', async () => {
      await Promise.all([notifications.idle(), callMilestones.idle()]);
      await webhook?.close();
    });
  },
  { name: 'services', dependencies: ['database', 'realtime', 'state', 'metrics', 'uploads'] },
);
