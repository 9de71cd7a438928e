-- Full-text search over message content. 'simple' has no stemming and no stop words, so
-- every language is matched as written, as on SQLite. The tsvector is a stored generated
-- column, not an index expression: ranking reads it instead of parsing every matching
-- message again, which is ten times faster for a word found in most messages. Adding it
-- rewrites the table once (no row trigger fires, so the append-only guard is not involved).
ALTER TABLE messages
    ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;
CREATE INDEX messages_search ON messages USING gin (search);
