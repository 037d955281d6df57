-- AlterTable (hand-written generation expression)
-- Prisma's schema language has no generated columns: schema.prisma declares this column as
-- Unsupported("tsvector") with the generation expression as its dbgenerated default, which is how
-- Prisma's differ reads a generated column back, so later generated migrations leave it alone.
-- PostgreSQL computes the document from the body on every insert and update, so it can never disagree
-- with the body. Why this expression:
-- - 'simple' lowercases and splits into words without stemming or stop words: every language of a
--   multilingual chat is searched alike (English stemming would mangle the others), and a search for
--   a word finds that word, not its stem's relatives.
-- - Bodies are plain text, but the default text-search parser reads `<...>` as HTML tags and `&...;`
--   as entities and drops them (and whatever sits between <script> and </script>); turning < > &
--   into spaces first indexes every word the user actually typed. The search query and the snippet
--   builder apply the same substitution, so all three tokenize alike.
-- Adding the column rewrites the table once.
ALTER TABLE "messages" ADD COLUMN     "search_vector" tsvector GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, translate("body", '<>&'::text, '   '::text))) STORED;

-- CreateIndex
CREATE INDEX "messages_search_vector_idx" ON "messages" USING GIN ("search_vector");
