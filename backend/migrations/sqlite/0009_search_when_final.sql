-- Search indexes a message once it is final, not at every save while it streams: a
-- streamed reply is saved every --stream-flush-ms, and re-indexing the whole reply at each
-- flush cost O(reply) a flush. A title is indexed again only when it changes (every save
-- sets the column, and `UPDATE OF title` fires for that alone).
DROP TRIGGER contexts_fts_update;
CREATE TRIGGER contexts_fts_update AFTER UPDATE OF title ON contexts
WHEN old.title IS NOT new.title BEGIN
    DELETE FROM contexts_fts WHERE rowid = old.rowid;
    INSERT INTO contexts_fts (rowid, title) VALUES (new.rowid, new.title);
END;

DROP TRIGGER messages_fts_insert;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
WHEN new.status != 'streaming' BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.rowid,
        (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(new.content)));
END;

-- A final message is in the index, a streaming one is not: the entry leaves when a final
-- message changes (or streams again), and comes when the message is final again.
DROP TRIGGER messages_fts_update;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages
WHEN (old.status != 'streaming' OR new.status != 'streaming')
    AND (old.content IS NOT new.content OR old.status IS NOT new.status) BEGIN
    DELETE FROM messages_fts WHERE rowid = old.rowid AND old.status != 'streaming';
    INSERT INTO messages_fts (rowid, body)
        SELECT new.rowid,
            (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(new.content))
        WHERE new.status != 'streaming';
END;

-- Replies that were streaming when this migration ran are indexed once they end.
DELETE FROM messages_fts WHERE rowid IN (SELECT rowid FROM messages WHERE status = 'streaming');
