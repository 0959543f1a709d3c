-- Search indexing leaves the save's transaction. Writing a message's FTS5 entry at each
-- save (a new segment for the main and the three prefix indexes, the structure record,
-- the averages, the docsize row) took about half the pages a save wrote and 0.3 ms of its
-- commit. Now the save only notes the message in `search_pending` (one small row in a
-- table the indexer keeps near empty), and a background indexer writes the entries of
-- many messages in one transaction (`store/indexer.rs`); a search first waits until the
-- indexer has caught up with every save before it. What is noted here and not yet
-- indexed when the process stops is indexed at the next start: the note is durable,
-- committed with the message.
--
-- Invariant: a message without a row here has an index entry exactly when it is final
-- (status other than 'streaming'); a message with a row here has one exactly when
-- `indexed` is 1 (the entry of its content before the change the row notes). So the
-- indexer removes only entries that exist and never adds one twice.
CREATE TABLE search_pending (
    message_rowid INTEGER PRIMARY KEY,
    indexed       INTEGER NOT NULL
);

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_update;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER contexts_fts_delete;
DROP TRIGGER contexts_fts_owner;

-- A final message is noted for indexing (the rowid bound of migration 0011 still fails
-- the save that would pass it, as before).
CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
WHEN new.status != 'streaming' BEGIN
    SELECT RAISE(ABORT, 'search index: message rowid beyond 2^36') WHERE new.rowid >= 68719476736;
    INSERT INTO search_pending (message_rowid, indexed) SELECT new.rowid, 0
        WHERE NOT EXISTS (SELECT 1 FROM search_pending WHERE message_rowid = new.rowid);
END;
-- A change of text or status that the index must follow (as migration 0009 chose them:
-- not the flushes of a reply while it streams). A message noted already keeps its note,
-- which still says whether it has an entry. (Not `INSERT OR IGNORE`: in a trigger the
-- conflict policy of the statement that fired it wins, and a save's upsert aborts.)
CREATE TRIGGER messages_search_update AFTER UPDATE OF content, status ON messages
WHEN (old.status != 'streaming' OR new.status != 'streaming')
    AND (old.content IS NOT new.content OR old.status IS NOT new.status) BEGIN
    SELECT RAISE(ABORT, 'search index: message rowid beyond 2^36') WHERE new.rowid >= 68719476736;
    INSERT INTO search_pending (message_rowid, indexed) SELECT new.rowid, old.status != 'streaming'
        WHERE NOT EXISTS (SELECT 1 FROM search_pending WHERE message_rowid = new.rowid);
END;
-- A message deleted on its own takes its entry along, if it has one, and its note. (When
-- its context is deleted, the context's trigger below removed the entries first; the
-- owner cannot be looked up from here any more, and only the note goes.)
CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts
        WHERE rowid = ((SELECT o.id FROM contexts c JOIN search_owners o ON o.owner = c.owner
                        WHERE c.id = old.context_id) << 36) | old.rowid
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
        WHERE m.context_id = old.id AND coalesce(p.indexed, m.status != 'streaming'));
END;

-- Chats moved to another user take their entries along (migration 0011), now the ones
-- that exist: an entry of a noted message leaves, and the indexer adds the new one.
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
        WHERE m.context_id = new.id AND coalesce(p.indexed, m.status != 'streaming'));
    UPDATE search_pending SET indexed = 0
        WHERE message_rowid IN (SELECT rowid FROM messages WHERE context_id = new.id);
    INSERT INTO messages_fts (rowid, body)
        SELECT ((SELECT id FROM search_owners WHERE owner = new.owner) << 36) | m.rowid,
            (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(m.content))
        FROM messages m WHERE m.context_id = new.id AND m.status != 'streaming'
            AND m.rowid NOT IN (SELECT message_rowid FROM search_pending);
END;

-- No query reads this index: the one filter on `state` (the look for unfinished work at
-- start) is an OR that SQLite answers by scanning the table, and every save rewrote the
-- context's entry here.
DROP INDEX contexts_by_state;
