-- AlterTable
ALTER TABLE "conversation_members" ADD COLUMN     "archived_at" TIMESTAMPTZ(3);
