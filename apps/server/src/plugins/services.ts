import fp from 'fastify-plugin';
import type { Config } from '../config.ts';
import { ConversationService } from '../domain/conversations.ts';
import { MessageService } from '../domain/messages.ts';
import { PresenceService } from '../domain/presence.ts';
import { ReceiptService } from '../domain/receipts.ts';
import { SyncService } from '../domain/sync.ts';
import { TypingService } from '../domain/typing.ts';
import { UserService } from '../domain/users.ts';
import { SocketFanout } from '../transport/socket/fanout.ts';

/** The transport-free domain services; REST routes and socket handlers both call these. */
export interface Services {
  users: UserService;
  conversations: ConversationService;
  messages: MessageService;
  receipts: ReceiptService;
  sync: SyncService;
  typing: TypingService;
  presence: PresenceService;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const fanout = new SocketFanout(app.io, app.log);
    app.decorate('services', {
      users: new UserService(app.db),
      conversations: new ConversationService(app.db, fanout),
      messages: new MessageService(app.db, fanout, { maxBodyLength: config.limits.messageBodyLength }),
      receipts: new ReceiptService(app.db, fanout),
      sync: new SyncService(app.db),
      presence: new PresenceService(app.db, app.state.presence, fanout),
      typing: new TypingService(app.db, app.state.typing, fanout, { ttlMs: config.typing.ttlMs }),
    });
  },
  { name: 'services', dependencies: ['database', 'realtime', 'state'] },
);
