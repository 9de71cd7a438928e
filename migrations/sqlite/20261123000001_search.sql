-- Full-text search over message content: an FTS5 table with its own copy of the text,
-- joined back to messages by id. Not an external-content table: that would key on the
-- messages table's implicit rowid, which VACUUM may renumber. Diacritics are kept, as
-- Postgres's 'simple' configuration keeps them.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    content,
    message_id UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 0'
);

INSERT INTO messages_fts (content, message_id) SELECT content, id FROM messages;

-- Messages are append-only, so insert is the only change to follow; the purge paths remove
-- a purged message's text from here in the same transaction.
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO messages_fts (content, message_id) VALUES (new.content, new.id);
END;
