-- Full-text search over chat titles and message text. The vectors are generated columns,
-- so the statement that saves a row updates its vector in the same transaction, and
-- adding them computes the vectors of the rows already stored. The 'simple' configuration
-- (no stemming, no stop words) matches what the SQLite store's FTS5 tokenizer does.
ALTER TABLE contexts ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', title)) STORED;
-- A message's content is a JSON array of parts; only the text of its parts is indexed.
ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (
        jsonb_to_tsvector('simple', jsonb_path_query_array(content::jsonb, '$[*].text'), '["string"]')
    ) STORED;
CREATE INDEX contexts_search ON contexts USING GIN (search);
CREATE INDEX messages_search ON messages USING GIN (search);
