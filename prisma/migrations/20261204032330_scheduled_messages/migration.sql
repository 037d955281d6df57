-- CreateEnum
CREATE TYPE "ScheduledStatus" AS ENUM ('pending', 'sending', 'sent', 'canceled', 'failed');

-- CreateTable
CREATE TABLE "scheduled_messages" (
    "id" UUID NOT NULL,
    "conversation_id" UUID NOT NULL,
    "sender_id" TEXT NOT NULL,
    "client_msg_id" TEXT NOT NULL,
    "body" TEXT NOT NULL,
    "attachments" JSONB NOT NULL DEFAULT '[]',
    "send_at" TIMESTAMPTZ(3) NOT NULL,
    "status" "ScheduledStatus" NOT NULL DEFAULT 'pending',
    "lease_until" TIMESTAMPTZ(3),
    "claimed_by" TEXT,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "message_id" UUID,
    "error" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "scheduled_messages_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "scheduled_messages_status_send_at_idx" ON "scheduled_messages"("status", "send_at");

-- CreateIndex
CREATE INDEX "scheduled_messages_sender_id_status_send_at_idx" ON "scheduled_messages"("sender_id", "status", "send_at");

-- CreateIndex
CREATE UNIQUE INDEX "scheduled_messages_sender_id_client_msg_id_key" ON "scheduled_messages"("sender_id", "client_msg_id");

-- AddForeignKey
ALTER TABLE "scheduled_messages" ADD CONSTRAINT "scheduled_messages_conversation_id_fkey" FOREIGN KEY ("conversation_id") REFERENCES "conversations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "scheduled_messages" ADD CONSTRAINT "scheduled_messages_sender_id_fkey" FOREIGN KEY ("sender_id") REFERENCES "users"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
