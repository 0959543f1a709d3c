-- Branches: every message names the message it follows (`parent_id`, null for the first),
-- so edits and regenerated replies become siblings instead of overwriting. `seq` stays
-- unique per context and is now the insertion order over the whole tree. The context
-- names the last message of its active path (`active_leaf`; null: the newest message).
ALTER TABLE messages ADD COLUMN parent_id TEXT;
ALTER TABLE contexts ADD COLUMN active_leaf TEXT;

-- Existing chats become a single branch: each message follows the one before it.
UPDATE messages m SET parent_id = chain.prev
FROM (
    SELECT id, LAG(id) OVER (PARTITION BY context_id ORDER BY seq) AS prev FROM messages
) chain
WHERE m.id = chain.id AND chain.prev IS NOT NULL;
