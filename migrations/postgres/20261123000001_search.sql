-- Full-text search over message content. 'simple' has no stemming and no stop words, so
-- every language is matched as written, as on SQLite. An expression index: nothing more is
-- stored per row, and queries must use the same expression to be served by it.
CREATE INDEX messages_content_search ON messages USING gin (to_tsvector('simple', content));
