-- Full-text search over chat titles and message text (FTS5). Both indexes are
-- contentless (the text lives in the tables already) with delete support, keyed by the
-- rowid of the row they index, and kept current by triggers, so the transaction that
-- saves a context or a message updates its index entry too.
CREATE VIRTUAL TABLE contexts_fts USING fts5(
    title, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE messages_fts USING fts5(
    body, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
);

-- A message's content is a JSON array of parts; only the text of its parts is indexed,
-- not the JSON around it.
CREATE TRIGGER contexts_fts_insert AFTER INSERT ON contexts BEGIN
    INSERT INTO contexts_fts (rowid, title) VALUES (new.rowid, new.title);
END;
CREATE TRIGGER contexts_fts_update AFTER UPDATE OF title ON contexts BEGIN
    DELETE FROM contexts_fts WHERE rowid = old.rowid;
    INSERT INTO contexts_fts (rowid, title) VALUES (new.rowid, new.title);
END;
CREATE TRIGGER contexts_fts_delete AFTER DELETE ON contexts BEGIN
    DELETE FROM contexts_fts WHERE rowid = old.rowid;
END;

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.rowid,
        (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(new.content)));
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = old.rowid;
    INSERT INTO messages_fts (rowid, body) VALUES (new.rowid,
        (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(new.content)));
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = old.rowid;
END;

-- Rows stored before this migration.
INSERT INTO contexts_fts (rowid, title) SELECT rowid, title FROM contexts;
INSERT INTO messages_fts (rowid, body)
    SELECT m.rowid, (SELECT group_concat(json_extract(value, '$.text'), ' ') FROM json_each(m.content))
    FROM messages m;
