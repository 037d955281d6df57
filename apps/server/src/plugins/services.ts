import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { CallService } from '../domain/calls.ts';
import { ConversationService } from '../domain/conversations.ts';
import { MessageService } from '../domain/messages.ts';
import { NotificationService } from '../domain/notifications.ts';
import { PresenceService } from '../domain/presence.ts';
import { ReceiptService } from '../domain/receipts.ts';
import { SearchService } from '../domain/search.ts';
import { SyncService } from '../domain/sync.ts';
import { TypingService } from '../domain/typing.ts';
import { UserService } from '../domain/users.ts';
import { WebhookSender } from '../domain/webhook.ts';
import type { Fanout } from '../domain/fanout.ts';
import { SocketFanout } from '../transport/socket/fanout.ts';
import { RoutedFanout } from '../transport/socket/routed-fanout.ts';

/** The transport-free domain services; REST routes and socket handlers both call these. */
export interface Services {
  users: UserService;
  conversations: ConversationService;
  messages: MessageService;
  receipts: ReceiptService;
  sync: SyncService;
  search: SearchService;
  typing: TypingService;
  presence: PresenceService;
  notifications: NotificationService;
  calls: CallService;
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
    // The milestone check needs the call service, which needs the notifications: tied through a closure.
    let calls: CallService | undefined;
    const notifications = new NotificationService(app.db, app.state.presence, fanout, {
      webhook,
      afterMessages: (messages) => calls?.checkMilestones(messages) ?? Promise.resolve(),
      log: app.log,
    });
    calls = new CallService(app.db, app.state.calls, app.state.presence, fanout, notifications, webhook, config.calls);
    app.decorate('services', {
      users: new UserService(app.sql),
      conversations: new ConversationService(app.db, fanout, notifications),
      messages: new MessageService(app.db, app.sql, fanout, {
        maxBodyLength: config.limits.messageBodyLength,
        listener: {
          sent: (message, memberIds) => notifications.messageSent(message, memberIds),
          reacted: (message, actorId, emoji) => notifications.reacted(message, actorId, emoji),
        },
        onBatch: (messages) => app.metrics.writeBatchSize.observe({ writer: 'messages' }, messages),
        attachments: (senderId, conversationId, attachments) => app.uploads.resolveAttachments(senderId, conversationId, attachments),
      }),
      receipts: new ReceiptService(app.db, app.sql, fanout, { onBatch: (reports) => app.metrics.writeBatchSize.observe({ writer: 'receipts' }, reports) }),
      sync: new SyncService(app.db),
      search: new SearchService(app.db),
      presence: new PresenceService(app.db, app.state.presence, fanout, {
        // Once per outage, not per user: the rest wait in the same queue.
        onDeferred: (error, pending) => {
          if (pending === 1) app.log.warn({ err: error }, 'presence: announcements wait for PostgreSQL (the contacts query failed); the presence tick retries them');
        },
      }),
      typing: new TypingService(app.db, app.state.typing, fanout, { ttlMs: config.typing.ttlMs }),
      notifications,
      calls,
    });
    // Before the database closes: notifications reported by the last requests are written, then
    // webhook attempts in flight finish (each bounded by its timeout); queued retries are dropped.
    app.addHook('preClose', async () => {
      await notifications.idle();
      await webhook?.close();
    });
  },
  { name: 'services', dependencies: ['database', 'realtime', 'state', 'metrics', 'uploads'] },
);
