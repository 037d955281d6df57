-- AlterTable
ALTER TABLE "conversations" ADD COLUMN     "calls_unlocked_at" TIMESTAMPTZ(3);

-- AlterTable
ALTER TABLE "notifications" ADD COLUMN     "actor_id" TEXT,
ADD COLUMN     "conversation_id" UUID,
ADD COLUMN     "message_id" UUID,
ADD COLUMN     "preview" TEXT NOT NULL DEFAULT '';

-- CreateIndex
CREATE INDEX "notifications_recipient_id_id_idx" ON "notifications"("recipient_id", "id" DESC);
