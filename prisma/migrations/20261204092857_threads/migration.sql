-- AlterTable
ALTER TABLE "messages" ADD COLUMN     "thread_last_reply_at" TIMESTAMPTZ(3),
ADD COLUMN     "thread_reply_count" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "thread_root_id" UUID;

-- CreateTable
CREATE TABLE "thread_reads" (
    "user_id" TEXT NOT NULL,
    "root_id" UUID NOT NULL,
    "conversation_id" UUID NOT NULL,
    "last_read_seq" INTEGER NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "thread_reads_pkey" PRIMARY KEY ("user_id","root_id")
);

-- CreateIndex (partial, hand-written: only thread replies and thread roots have entries, so the
-- messages that are neither, nearly all of them, pay no index maintenance for threads)
CREATE INDEX "messages_thread_root_id_seq_idx" ON "messages"("thread_root_id", "seq") WHERE "thread_root_id" IS NOT NULL;

-- CreateIndex (partial, as above)
CREATE INDEX "messages_conversation_id_thread_last_reply_at_idx" ON "messages"("conversation_id", "thread_last_reply_at" DESC) WHERE "thread_last_reply_at" IS NOT NULL;

-- AddForeignKey
ALTER TABLE "messages" ADD CONSTRAINT "messages_thread_root_id_fkey" FOREIGN KEY ("thread_root_id") REFERENCES "messages"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "thread_reads" ADD CONSTRAINT "thread_reads_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "thread_reads" ADD CONSTRAINT "thread_reads_root_id_fkey" FOREIGN KEY ("root_id") REFERENCES "messages"("id") ON DELETE CASCADE ON UPDATE CASCADE;
