/**
 * The browser client: one page over the SDK (packages/client). The SDK owns the connection, retries,
 * deduplication, resync and receipts; the page keeps what it shows (PageState: conversations with
 * unread counts, the open conversation's messages, typing and presence) and turns clicks into
 * requests. This file wires it: the core modules first, each into its slot of the page, then the
 * feature modules, which see only PageApi.
 */
import { installArchive } from './archive.ts';
import { installCalls } from './calls.ts';
import { installComposer } from './composer.ts';
import { installConnection } from './connection.ts';
import { installConversationPane } from './conversation.ts';
import { installConversationList } from './conversations.ts';
import { installMessages } from './messages.ts';
import { installNotifications } from './notifications.ts';
import { createPage } from './page.ts';
import { installPresence } from './presence.ts';
import { installScheduled } from './scheduled.ts';
import { installSearch } from './search.ts';
import { installThreads } from './threads.ts';
import { loadSession } from './session.ts';
import { PageState } from './state.ts';
import { ui } from './ui.ts';
import { installUploads } from './uploads.ts';

const page = createPage(new PageState());
// For diagnostics from the console and for the browser tests (e.g. `chatPage.client.receipts(id)`).
(globalThis as { chatPage?: typeof page }).chatPage = page;

// Core modules: their client hooks run before the features' (one core handler per SDK event).
page.connection = installConnection(page);
page.list = installConversationList(page);
page.pane = installConversationPane(page);
page.messages = installMessages(page);
page.composer = installComposer(page);
page.presence = installPresence(page);

installNotifications(page);
installArchive(page);
installCalls(page);
installSearch(page);
installScheduled(page);
installUploads(page);
installThreads(page);

const saved = loadSession();
if (saved) page.connection.start(saved);
else ui.signinName.focus();
