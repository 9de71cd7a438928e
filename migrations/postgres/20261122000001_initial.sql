-- Colloquy's schema on Postgres. Times are timestamptz (UTC), ids UUIDv7, money integer nano-USD.

CREATE TABLE conversations (
    id            uuid PRIMARY KEY,
    owner         text NOT NULL,
    title         text,
    specialist_id text,
    message_count bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    archived_at   timestamptz,
    deleted_at    timestamptz
);
-- An owner's live conversations, newest activity first (the list and its cursor).
CREATE INDEX conversations_owner_updated ON conversations (owner, updated_at DESC, id DESC)
    WHERE deleted_at IS NULL;
-- Retention sweeps over archived and deleted conversations.
CREATE INDEX conversations_archived_at ON conversations (archived_at) WHERE archived_at IS NOT NULL;
CREATE INDEX conversations_deleted_at ON conversations (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    seq             bigint NOT NULL CHECK (seq > 0),
    role            text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content         text NOT NULL,
    attachments     jsonb NOT NULL DEFAULT '[]'::jsonb,
    input_tokens    bigint,
    output_tokens   bigint,
    status          text NOT NULL CHECK (status IN ('complete', 'error', 'cut')),
    created_at      timestamptz NOT NULL,
    -- Also the index for reading a conversation in order.
    CONSTRAINT messages_conversation_seq UNIQUE (conversation_id, seq)
);
CREATE INDEX messages_created_at ON messages (created_at);

-- Messages are append-only: UPDATE, DELETE and TRUNCATE are refused unless the session
-- opened the purge path (SET LOCAL colloquy.purge = 'on', used only for user deletion).
CREATE FUNCTION messages_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('colloquy.purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'messages are append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER messages_append_only_rows BEFORE UPDATE OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_append_only();
CREATE TRIGGER messages_append_only_truncate BEFORE TRUNCATE ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION messages_append_only();

CREATE TABLE usage_logs (
    id              uuid PRIMARY KEY,
    request_id      text NOT NULL,
    user_hash       text NOT NULL,
    conversation_id uuid,
    specialist_id   text,
    provider        text NOT NULL,
    model           text NOT NULL,
    input_tokens    bigint NOT NULL DEFAULT 0,
    output_tokens   bigint NOT NULL DEFAULT 0,
    cached_tokens   bigint NOT NULL DEFAULT 0,
    usage_estimated boolean NOT NULL DEFAULT false,
    cost_nano_usd   bigint NOT NULL DEFAULT 0,
    latency_ms      bigint NOT NULL,
    ttft_ms         bigint,
    streamed        boolean NOT NULL,
    success         boolean NOT NULL,
    error_code      text,
    created_at      timestamptz NOT NULL
);
CREATE INDEX usage_logs_user_created ON usage_logs (user_hash, created_at DESC);
CREATE INDEX usage_logs_created ON usage_logs (created_at);
CREATE INDEX usage_logs_request ON usage_logs (request_id);
CREATE INDEX usage_logs_conversation ON usage_logs (conversation_id) WHERE conversation_id IS NOT NULL;
CREATE INDEX usage_logs_model_created ON usage_logs (model, created_at);
CREATE INDEX usage_logs_specialist_created ON usage_logs (specialist_id, created_at);

CREATE TABLE files (
    id           uuid PRIMARY KEY,
    owner        text NOT NULL,
    display_name text NOT NULL,
    mime         text NOT NULL,
    size         bigint NOT NULL CHECK (size >= 0),
    sha256       text NOT NULL,
    storage_key  text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    deleted_at   timestamptz
);
-- An owner's live files newest first (the id is time-ordered, so it is the cursor).
CREATE INDEX files_owner_id ON files (owner, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX files_sha256 ON files (sha256);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    owner        text NOT NULL,
    user_hash    text NOT NULL,
    name         text NOT NULL,
    prefix       text NOT NULL,
    hash         text NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN ('admin', 'user', 'viewer')),
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
-- An owner's keys newest first (ids are time-ordered UUIDv7, so the id is the cursor).
CREATE INDEX api_keys_owner_id ON api_keys (owner, id DESC);
CREATE INDEX api_keys_prefix ON api_keys (prefix);

-- Idempotency-Key on /v1/chat/send: the first request with a key claims it (response NULL
-- while it runs), and its successful answer is kept for replays within 24 hours.
CREATE TABLE idempotency_keys (
    owner      text NOT NULL,
    key        text NOT NULL,
    body_hash  text NOT NULL,
    response   text,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
