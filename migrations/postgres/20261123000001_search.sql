-- Full-text search over message content. 'simple' has no stemming and no stop words, so
-- every language is matched as written, as on SQLite.
--
-- The text is indexed with the punctuation that joins words into e-mail addresses, host
-- names, URLs, paths and version numbers turned into spaces. Postgres's parser would keep
-- `me@example.com` or `3.14` as one token, which a query split into words (as the service
-- splits it, and as SQLite's tokenizer does) could never match.
--
-- The tsvector is a stored generated column, not an index expression: ranking reads it
-- instead of parsing every matching message again, which is ten times faster for a word
-- found in most messages. Adding it rewrites the table once (no row trigger fires, so the
-- append-only guard is not involved).
ALTER TABLE messages
    ADD COLUMN search tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', translate(content, '@.:/_+~=?&%#', '            '))
    ) STORED;
CREATE INDEX messages_search ON messages USING gin (search);
