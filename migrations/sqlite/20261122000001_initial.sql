-- Colloquy's schema on SQLite. Ids are 16-byte BLOBs (UUIDv7), times RFC 3339 text in UTC,
-- money integer nano-USD; the same tables, constraints and indexes as on Postgres.

CREATE TABLE conversations (
    id            BLOB PRIMARY KEY NOT NULL,
    owner         TEXT NOT NULL,
    title         TEXT,
    specialist_id TEXT,
    message_count INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    archived_at   TEXT,
    deleted_at    TEXT
);
CREATE INDEX conversations_owner_updated ON conversations (owner, updated_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX conversations_archived_at ON conversations (archived_at) WHERE archived_at IS NOT NULL;
CREATE INDEX conversations_deleted_at ON conversations (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE messages (
    id              BLOB PRIMARY KEY NOT NULL,
    conversation_id BLOB NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL CHECK (seq > 0),
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content         TEXT NOT NULL,
    attachments     TEXT NOT NULL DEFAULT '[]',
    input_tokens    INTEGER,
    output_tokens   INTEGER,
    status          TEXT NOT NULL CHECK (status IN ('complete', 'error', 'cut')),
    created_at      TEXT NOT NULL,
    CONSTRAINT messages_conversation_seq UNIQUE (conversation_id, seq)
);
CREATE INDEX messages_created_at ON messages (created_at);

-- Messages are append-only. SQLite has no session settings, so the purge path (user
-- deletion only) opens a gate by inserting a row here inside its own transaction; no other
-- writer can run meanwhile, and a crash rolls the row back.
CREATE TABLE purge_gate (opened_by TEXT NOT NULL);

CREATE TRIGGER messages_no_update BEFORE UPDATE ON messages
BEGIN
    SELECT RAISE(ABORT, 'messages are append-only: UPDATE refused');
END;

CREATE TRIGGER messages_no_delete BEFORE DELETE ON messages
WHEN NOT EXISTS (SELECT 1 FROM purge_gate)
BEGIN
    SELECT RAISE(ABORT, 'messages are append-only: DELETE refused');
END;

CREATE TABLE usage_logs (
    id              BLOB PRIMARY KEY NOT NULL,
    request_id      TEXT NOT NULL,
    user_hash       TEXT NOT NULL,
    conversation_id BLOB,
    specialist_id   TEXT,
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    cached_tokens   INTEGER NOT NULL DEFAULT 0,
    usage_estimated INTEGER NOT NULL DEFAULT 0,
    cost_nano_usd   INTEGER NOT NULL DEFAULT 0,
    latency_ms      INTEGER NOT NULL,
    ttft_ms         INTEGER,
    streamed        INTEGER NOT NULL,
    success         INTEGER NOT NULL,
    error_code      TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX usage_logs_user_created ON usage_logs (user_hash, created_at DESC);
CREATE INDEX usage_logs_created ON usage_logs (created_at);
CREATE INDEX usage_logs_request ON usage_logs (request_id);
CREATE INDEX usage_logs_conversation ON usage_logs (conversation_id) WHERE conversation_id IS NOT NULL;
CREATE INDEX usage_logs_model_created ON usage_logs (model, created_at);
CREATE INDEX usage_logs_specialist_created ON usage_logs (specialist_id, created_at);

CREATE TABLE files (
    id           BLOB PRIMARY KEY NOT NULL,
    owner        TEXT NOT NULL,
    display_name TEXT NOT NULL,
    mime         TEXT NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    sha256       TEXT NOT NULL,
    storage_key  TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    deleted_at   TEXT
);
-- An owner's live files newest first (the id is time-ordered, so it is the cursor).
CREATE INDEX files_owner_id ON files (owner, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX files_sha256 ON files (sha256);

CREATE TABLE api_keys (
    id           BLOB PRIMARY KEY NOT NULL,
    owner        TEXT NOT NULL,
    user_hash    TEXT NOT NULL,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
-- An owner's keys newest first (ids are time-ordered UUIDv7, so the id is the cursor).
CREATE INDEX api_keys_owner_id ON api_keys (owner, id DESC);
CREATE INDEX api_keys_prefix ON api_keys (prefix);

-- Idempotency-Key on /v1/chat/send (see the Postgres migration).
CREATE TABLE idempotency_keys (
    owner      TEXT NOT NULL,
    key        TEXT NOT NULL,
    body_hash  TEXT NOT NULL,
    response   TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
