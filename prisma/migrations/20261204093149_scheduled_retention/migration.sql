-- CreateIndex
-- The retention sweep's (domain/scheduled-retention.ts): per finished status, the rows by when they
-- finished. Built in one pass that blocks writes to scheduled_messages meanwhile: about a second per
-- million rows on a 2-core machine.
CREATE INDEX "scheduled_messages_status_updated_at_idx" ON "scheduled_messages"("status", "updated_at");
