-- CreateTable
CREATE TABLE "token_revocations" (
    "user_id" TEXT NOT NULL,
    "revoked_before" TIMESTAMPTZ(3) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "token_revocations_pkey" PRIMARY KEY ("user_id")
);

-- CreateIndex
CREATE INDEX "token_revocations_revoked_before_idx" ON "token_revocations"("revoked_before");
