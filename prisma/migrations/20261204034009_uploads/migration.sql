-- CreateEnum
CREATE TYPE "upload_status" AS ENUM ('pending', 'ready');

-- AlterTable
ALTER TABLE "attachments" ADD COLUMN     "upload_id" UUID;

-- CreateTable
CREATE TABLE "uploads" (
    "id" UUID NOT NULL,
    "owner_id" TEXT NOT NULL,
    "conversation_id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "mime" TEXT NOT NULL,
    "size" INTEGER NOT NULL,
    "status" "upload_status" NOT NULL DEFAULT 'pending',
    "width" INTEGER,
    "height" INTEGER,
    "duration_ms" INTEGER,
    "has_thumbnail" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completed_at" TIMESTAMPTZ(3),

    CONSTRAINT "uploads_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "uploads_created_at_idx" ON "uploads"("created_at");

-- CreateIndex
CREATE INDEX "attachments_upload_id_idx" ON "attachments"("upload_id");

-- AddForeignKey
ALTER TABLE "attachments" ADD CONSTRAINT "attachments_upload_id_fkey" FOREIGN KEY ("upload_id") REFERENCES "uploads"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
