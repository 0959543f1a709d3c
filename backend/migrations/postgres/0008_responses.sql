-- The OpenAI-compatible API (/v1). A response is a turn of a context: the row keeps what
-- the request asked (model, instructions, tools, metadata, flags) and where its turn
-- starts; its output and events are derived from the context's stored messages, so they
-- read the same on any instance. `outcome` is written once, by the first reader that sees
-- the turn end, so a response never ends two ways. An idempotency key names one response
-- per owner (NULL keys never collide).
CREATE TABLE responses (
    id              TEXT PRIMARY KEY NOT NULL,
    owner           TEXT NOT NULL,
    context_id      TEXT NOT NULL REFERENCES contexts (id) ON DELETE CASCADE,
    idempotency_key TEXT,
    request         TEXT NOT NULL,
    outcome         TEXT,
    created_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX responses_by_key ON responses (owner, idempotency_key);
CREATE INDEX responses_by_context ON responses (context_id);

-- A conversation's metadata (OpenAI's 16 string pairs), beside its context row.
CREATE TABLE conversation_metadata (
    context_id TEXT PRIMARY KEY NOT NULL REFERENCES contexts (id) ON DELETE CASCADE,
    metadata   TEXT NOT NULL
);
