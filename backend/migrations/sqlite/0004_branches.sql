-- Branches: every message names the message it follows (`parent_id`, null for the first),
-- so edits and regenerated replies become siblings instead of overwriting. `seq` stays
-- unique per context and is now the insertion order over the whole tree. The context
-- names the last message of its active path (`active_leaf`; null: the newest message).
ALTER TABLE messages ADD COLUMN parent_id TEXT;
ALTER TABLE contexts ADD COLUMN active_leaf TEXT;

-- Existing chats become a single branch: each message follows the one before it.
UPDATE messages SET parent_id = (
    SELECT p.id FROM messages p
    WHERE p.context_id = messages.context_id AND p.seq < messages.seq
    ORDER BY p.seq DESC LIMIT 1
);
