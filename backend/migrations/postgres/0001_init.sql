-- The same model as the SQLite schema; integers are BIGINT and timestamps fixed-width
-- RFC 3339 text, so both stores share their queries.
CREATE TABLE contexts (
    id            TEXT PRIMARY KEY NOT NULL,
    title         TEXT NOT NULL,
    model_id      TEXT,
    mode          TEXT,
    system_prompt TEXT,
    state         TEXT NOT NULL,
    state_error   TEXT,
    retries       BIGINT NOT NULL DEFAULT 0,
    version       BIGINT NOT NULL,
    message_count BIGINT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX contexts_by_creation ON contexts (created_at DESC, id DESC);
CREATE INDEX contexts_by_state ON contexts (state);

CREATE TABLE messages (
    id                TEXT PRIMARY KEY NOT NULL,
    context_id        TEXT NOT NULL REFERENCES contexts (id) ON DELETE CASCADE,
    seq               BIGINT NOT NULL,
    role              TEXT NOT NULL,
    content           TEXT NOT NULL,
    tool_calls        TEXT,
    tool_call_id      TEXT,
    client_message_id TEXT,
    idempotency_key   TEXT,
    status            TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    version           BIGINT NOT NULL,
    UNIQUE (context_id, seq)
);

-- Which instance runs a context's turn, until when (database time, so instance clocks
-- need not agree). An expired lease is free for any instance to take.
CREATE TABLE leases (
    context_id TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
