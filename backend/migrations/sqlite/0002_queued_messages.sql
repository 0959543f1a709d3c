-- Messages sent while a turn ran, waiting for their own turn, in arrival order. They live
-- apart from `messages` so an instance that does not run the context's turn can queue one
-- without touching the context row, and so never races the runner's version-checked save.
-- The save that starts a queued message's turn moves it into `messages` and deletes it
-- here in one transaction.
CREATE TABLE queued_messages (
    id                TEXT PRIMARY KEY NOT NULL,
    context_id        TEXT NOT NULL REFERENCES contexts (id) ON DELETE CASCADE,
    content           TEXT NOT NULL,
    client_message_id TEXT,
    idempotency_key   TEXT,
    created_at        TEXT NOT NULL,
    version           INTEGER NOT NULL
);
CREATE INDEX queued_messages_by_context ON queued_messages (context_id, created_at, id);
