-- A save no longer notes a new message for search. Migration 0013 made every save of a
-- final message insert a row into `search_pending`: one more table, so one more page in
-- the save's commit (about 12 us of it on a local SSD, of a commit's 0.4 ms). Messages are
-- added with rising rowids, so the indexer now also keeps a mark: every message up to it
-- has been seen by the indexer; those above it are new, and the indexer's next pass
-- indexes the final ones among them and moves the mark past them. A note is made only
-- for a message at or below the mark whose text or status changes (a reply that was
-- still streaming when a pass went by, an edit, a rowid reused after the newest message
-- was deleted).
--
-- Invariant (0013's, for the messages at or below the mark): a message at or below
-- `upto` without a note has an index entry exactly when it is final; one with a note has
-- one exactly when the note's `indexed` says so; a message above `upto` has none (and
-- no note). So the indexer removes only entries that exist and never adds one twice.
CREATE TABLE search_watermark (
    id   INTEGER PRIMARY KEY CHECK (id = 0),
    upto INTEGER NOT NULL
);
-- Every stored message has been seen: by 0013's notes, or indexed before them.
INSERT INTO search_watermark (id, upto) SELECT 0, coalesce(max(rowid), 0) FROM messages;

DROP TRIGGER messages_search_insert;
DROP TRIGGER messages_search_update;
DROP TRIGGER messages_search_delete;
DROP TRIGGER contexts_fts_delete;
DROP TRIGGER contexts_fts_owner;

-- A final message at or below the mark (a reused rowid) is noted; above it, the mark says
-- enough. The rowid bound of migration 0011 still fails the save that would pass it.
CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
WHEN new.status != 'streaming' BEGIN
    SELECT RAISE(ABORT, 'search index: message rowid beyond 2^36') WHERE new.rowid >= 68719476736;
    INSERT INTO search_pending (message_rowid, indexed) SELECT new.rowid, 0
        WHERE new.rowid <= (SELECT upto FROM search_watermark)
        AND NOT EXISTS (SELECT 1 FROM search_pending WHERE message_rowid = new.rowid);
END;
-- A change of text or status that the index must follow, as 0013 chose them; above the
-- mark the next pass reads the message as it is then.
CREATE TRIGGER messages_search_update AFTER UPDATE OF content, status ON messages
WHEN (old.status != 'streaming' OR new.status != 'streaming')
    AND (old.content IS NOT new.content OR old.status IS NOT new.status) BEGIN
    SELECT RAISE(ABORT, 'search index: message rowid beyond 2^36') WHERE new.rowid >= 68719476736;
    INSERT INTO search_pending (message_rowid, indexed) SELECT new.rowid, old.status != 'streaming'
        WHERE new.rowid <= (SELECT upto FROM search_watermark)
        AND NOT EXISTS (SELECT 1 FROM search_pending WHERE message_rowid = new.rowid);
END;
-- A message deleted on its own takes its entry along, if it has one, and its note.
CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts
        WHERE rowid = ((SELECT o.id FROM contexts c JOIN search_owners o ON o.owner = c.owner
                        WHERE c.id = old.context_id) << 36) | old.rowid
        AND old.rowid <= (SELECT upto FROM search_watermark)
        AND coalesce((SELECT indexed FROM search_pending WHERE message_rowid = old.rowid),
                     old.status != 'streaming');
    DELETE FROM search_pending WHERE message_rowid = old.rowid;
END;

-- A context's messages leave with it: the entries that exist.
CREATE TRIGGER contexts_fts_delete BEFORE DELETE ON contexts BEGIN
    DELETE FROM contexts_fts
        WHERE rowid = ((SELECT id FROM search_owners WHERE owner = old.owner) << 36) | old.rowid;
    DELETE FROM messages_fts WHERE rowid IN (
        SELECT ((SELECT id FROM search_owners WHERE owner = old.owner) << 36) | m.rowid
        FROM messages m LEFT JOIN search_pending p ON p.message_rowid = m.rowid
        WHERE m.context_id = old.id AND m.rowid <= (SELECT upto FROM search_watermark)
        AND coalesce(p.indexed, m.status != 'streaming'));
END;

-- Chats moved to another user take their entries along: those that exist leave, and the
-- final messages at or below the mark get their new owner's (noted ones by the indexer,
-- as in 0013); the indexer indexes those above it under the owner of the time.
CREATE TRIGGER contexts_fts_owner AFTER UPDATE OF owner ON contexts
WHEN old.owner IS NOT new.owner BEGIN
    DELETE FROM contexts_fts
        WHERE rowid = ((SELECT id FROM search_owners WHERE owner = old.owner) << 36) | old.rowid
        AND old.title IS new.title;
    INSERT INTO contexts_fts (rowid, title)
        SELECT ((SELECT id FROM search_owners WHERE owner = new.owner) << 36) | new.rowid, new.title
        WHERE old.title IS new.title;
    DELETE FROM messages_fts WHERE rowid IN (
        SELECT ((SELECT id FROM search_owners WHERE owner = old.owner) << 36) | m.rowid
        FROM messages m LEFT JOIN search_pending p ON p.message_rowid = m.rowid
        WHERE m.context_id = new.id AND m.rowid <= (SELECT upto FROM search_watermark)
        AND coalesce(p.indexed, m.status != 'streaming'));
    UPDATE search_pending SET indexed = 0
        WHERE message_rowid IN (SELECT rowid FROM messages WHERE context_id = new.id);
    INSERT INTO messages_fts (rowid, body)
        SELECT ((SELECT id FROM search_owners WHERE owner = new.owner) << 36) | m.rowid,
            (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(m.content))
        FROM messages m WHERE m.context_id = new.id AND m.status != 'streaming'
            AND m.rowid <= (SELECT upto FROM search_watermark)
            AND m.rowid NOT IN (SELECT message_rowid FROM search_pending);
END;
