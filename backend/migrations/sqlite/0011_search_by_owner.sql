-- Search inside the owner's rows. Until now the FTS5 match ran over every user's entries
-- and the owner was checked after it, so a short prefix (`q=a`) read all users' matches.
-- Each owner now gets a number (`search_owners`), and an index entry's rowid carries it in
-- its high bits: rowid = owner number << 36 | the row's own rowid. A search asks FTS5 for
-- one owner's rowid range, so every doclist it reads is entered at that owner's first
-- entry and left after their last. Prefix indexes for one to three characters make a
-- short prefix one doclist (read in that range) instead of a merge of every term with
-- that prefix over all users (a longer prefix still gathers its terms' entries of every
-- user before the range applies; such terms are far fewer). Bounds: 2^27 owners and 2^36
-- rows per table; past them a write fails with a message saying so.
CREATE TABLE search_owners (
    id    INTEGER PRIMARY KEY CHECK (id < 134217728),
    owner TEXT NOT NULL UNIQUE
);
INSERT INTO search_owners (owner) SELECT DISTINCT owner FROM contexts ORDER BY owner;

DROP TRIGGER contexts_fts_insert;
DROP TRIGGER contexts_fts_update;
DROP TRIGGER contexts_fts_delete;
DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_update;
DROP TRIGGER messages_fts_delete;
DROP TABLE contexts_fts;
DROP TABLE messages_fts;

CREATE VIRTUAL TABLE contexts_fts USING fts5(
    title, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2',
    prefix = '1 2 3'
);
CREATE VIRTUAL TABLE messages_fts USING fts5(
    body, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2',
    prefix = '1 2 3'
);

-- An owner gets their number before a row of theirs is indexed (BEFORE triggers run ahead
-- of the AFTER triggers that index).
CREATE TRIGGER contexts_search_owner BEFORE INSERT ON contexts BEGIN
    INSERT OR IGNORE INTO search_owners (owner) VALUES (new.owner);
    SELECT RAISE(ABORT, 'search index: more than 2^27 owners')
        WHERE NOT EXISTS (SELECT 1 FROM search_owners WHERE owner = new.owner);
END;
CREATE TRIGGER contexts_search_new_owner BEFORE UPDATE OF owner ON contexts BEGIN
    INSERT OR IGNORE INTO search_owners (owner) VALUES (new.owner);
    SELECT RAISE(ABORT, 'search index: more than 2^27 owners')
        WHERE NOT EXISTS (SELECT 1 FROM search_owners WHERE owner = new.owner);
END;

-- Titles: indexed when a context is created and again when its title changes.
CREATE TRIGGER contexts_fts_insert AFTER INSERT ON contexts BEGIN
    SELECT RAISE(ABORT, 'search index: context rowid beyond 2^36') WHERE new.rowid >= 68719476736;
    INSERT INTO contexts_fts (rowid, title) VALUES (
        ((SELECT id FROM search_owners WHERE owner = new.owner) << 36) | new.rowid, new.title);
END;
CREATE TRIGGER contexts_fts_update AFTER UPDATE OF title ON contexts
WHEN old.title IS NOT new.title BEGIN
    DELETE FROM contexts_fts
        WHERE rowid = ((SELECT id FROM search_owners WHERE owner = old.owner) << 36) | old.rowid;
    INSERT INTO contexts_fts (rowid, title) VALUES (
        ((SELECT id FROM search_owners WHERE owner = new.owner) << 36) | new.rowid, new.title);
END;
-- A context's messages leave with it (their rows go by cascade, after the context row,
-- when the owner can no longer be looked up from them).
CREATE TRIGGER contexts_fts_delete BEFORE DELETE ON contexts BEGIN
    DELETE FROM contexts_fts
        WHERE rowid = ((SELECT id FROM search_owners WHERE owner = old.owner) << 36) | old.rowid;
    DELETE FROM messages_fts WHERE rowid IN (
        SELECT ((SELECT id FROM search_owners WHERE owner = old.owner) << 36) | m.rowid
        FROM messages m WHERE m.context_id = old.id AND m.status != 'streaming');
END;

-- Chats moved to another user (`UPDATE contexts SET owner = ...`, as the guide does when a
-- single-user server gets users) take their entries along, into the new owner's range.
-- The title moves here unless the same statement changed it (contexts_fts_update did).
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
        FROM messages m WHERE m.context_id = new.id AND m.status != 'streaming');
    INSERT INTO messages_fts (rowid, body)
        SELECT ((SELECT id FROM search_owners WHERE owner = new.owner) << 36) | m.rowid,
            (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(m.content))
        FROM messages m WHERE m.context_id = new.id AND m.status != 'streaming';
END;

-- Messages: indexed once final, as migration 0009 made it (a streaming reply is not
-- re-indexed at every flush); the text of their parts only.
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
WHEN new.status != 'streaming' BEGIN
    SELECT RAISE(ABORT, 'search index: message rowid beyond 2^36') WHERE new.rowid >= 68719476736;
    INSERT INTO messages_fts (rowid, body) VALUES (
        ((SELECT o.id FROM contexts c JOIN search_owners o ON o.owner = c.owner
          WHERE c.id = new.context_id) << 36) | new.rowid,
        (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(new.content)));
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages
WHEN (old.status != 'streaming' OR new.status != 'streaming')
    AND (old.content IS NOT new.content OR old.status IS NOT new.status) BEGIN
    SELECT RAISE(ABORT, 'search index: message rowid beyond 2^36') WHERE new.rowid >= 68719476736;
    DELETE FROM messages_fts
        WHERE rowid = ((SELECT o.id FROM contexts c JOIN search_owners o ON o.owner = c.owner
                        WHERE c.id = old.context_id) << 36) | old.rowid
        AND old.status != 'streaming';
    INSERT INTO messages_fts (rowid, body)
        SELECT ((SELECT o.id FROM contexts c JOIN search_owners o ON o.owner = c.owner
                 WHERE c.id = new.context_id) << 36) | new.rowid,
            (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(new.content))
        WHERE new.status != 'streaming';
END;
-- A message deleted on its own (its context still there); see contexts_fts_delete.
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.status != 'streaming' BEGIN
    DELETE FROM messages_fts
        WHERE rowid = ((SELECT o.id FROM contexts c JOIN search_owners o ON o.owner = c.owner
                        WHERE c.id = old.context_id) << 36) | old.rowid;
END;

-- The index of the rows already stored, built again in the new rowids, then merged into
-- one segment per index.
INSERT INTO contexts_fts (rowid, title)
    SELECT (o.id << 36) | c.rowid, c.title
    FROM contexts c JOIN search_owners o ON o.owner = c.owner;
INSERT INTO messages_fts (rowid, body)
    SELECT (o.id << 36) | m.rowid,
        (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(m.content))
    FROM messages m JOIN contexts c ON c.id = m.context_id
        JOIN search_owners o ON o.owner = c.owner
    WHERE m.status != 'streaming';
INSERT INTO contexts_fts (contexts_fts) VALUES ('optimize');
INSERT INTO messages_fts (messages_fts) VALUES ('optimize');
