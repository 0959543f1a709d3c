-- Contexts: one row per chat. `version` grows with every persisted change.
CREATE TABLE contexts (
    id            TEXT PRIMARY KEY NOT NULL,
    title         TEXT NOT NULL,
    model_id      TEXT,
    mode          TEXT,
    system_prompt TEXT,
    state         TEXT NOT NULL,
    state_error   TEXT,
    retries       INTEGER NOT NULL DEFAULT 0,
    version       INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX contexts_by_creation ON contexts (created_at DESC, id DESC);
CREATE INDEX contexts_by_state ON contexts (state);

-- Messages in context order (`seq`). `version` is the context version of the last change.
CREATE TABLE messages (
    id                TEXT PRIMARY KEY NOT NULL,
    context_id        TEXT NOT NULL REFERENCES contexts (id) ON DELETE CASCADE,
    seq               INTEGER NOT NULL,
    role              TEXT NOT NULL,
    content           TEXT NOT NULL,
    tool_calls        TEXT,
    tool_call_id      TEXT,
    client_message_id TEXT,
    idempotency_key   TEXT,
    status            TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    version           INTEGER NOT NULL,
    UNIQUE (context_id, seq)
);
