-- Search inside the owner's rows. Until now a search matched each of the owner's titles
-- and messages in turn (no index could take the owner and the words together), so its
-- cost grew with all of the owner's text. Now each indexed word carries a tag of its owner
-- in front (`search_tag`: a letter, 16 hex digits of the owner's MD5, a letter), in a
-- vector beside the plain one (`owned_search`), under a GIN index. A search asks for
-- tag+word prefixes, which the index finds among that owner's words only: other users'
-- entries are not in the range it reads (a tag shared by two owners would only add rows
-- that the owner check drops). The plain vectors stay for ranking (`ts_rank` reads their
-- positions); their own GIN indexes, which no search uses any more, go.
CREATE FUNCTION search_tag(owner TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'o' || left(md5(owner), 16) || 'x';

-- The owner's words of a vector. A word too long to take the tag (to_tsvector keeps words
-- up to 2047 bytes, a lexeme holds 2046) is left out rather than failing the save.
CREATE FUNCTION tag_words(owner TEXT, words tsvector) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN array_to_tsvector(ARRAY(
        SELECT search_tag(owner) || w FROM unnest(tsvector_to_array(words)) AS w
        WHERE octet_length(w) <= 2000));

-- The query of `tag_words`: each word of a plain query (`to_tsquery` output, where a
-- word is quoted) behind the owner's tag.
CREATE FUNCTION tag_query(owner TEXT, query tsquery) RETURNS tsquery
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN regexp_replace(query::text, '''((?:[^'']|'''')*)''', '''' || search_tag(owner) || '\1''', 'g')::tsquery;

DROP INDEX contexts_search;
DROP INDEX messages_search;
CREATE INDEX contexts_owned_search ON contexts USING GIN (tag_words(owner, search));

ALTER TABLE messages ADD COLUMN owned_search tsvector;

-- As in migration 0009 (a message is indexed once final), and the owner's vector with it.
CREATE OR REPLACE FUNCTION messages_search_when_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'streaming' THEN
        NEW.search := NULL;
        NEW.owned_search := NULL;
    ELSIF TG_OP = 'INSERT' OR OLD.status = 'streaming' OR NEW.content IS DISTINCT FROM OLD.content THEN
        NEW.search := jsonb_to_tsvector('simple',
            jsonb_path_query_array(NEW.content::jsonb, '$[*].text'), '["string"]');
        NEW.owned_search := tag_words(
            (SELECT owner FROM contexts WHERE id = NEW.context_id), NEW.search);
    END IF;
    RETURN NEW;
END
$$;

-- Chats moved to another user (`UPDATE contexts SET owner = ...`, as the guide does when a
-- single-user server gets users) take their messages' tagged words along (the title's
-- index follows by itself: it is computed from the row).
CREATE FUNCTION messages_follow_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE messages SET owned_search = tag_words(NEW.owner, search)
        WHERE context_id = NEW.id AND search IS NOT NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER contexts_owner_search AFTER UPDATE OF owner ON contexts
    FOR EACH ROW WHEN (OLD.owner IS DISTINCT FROM NEW.owner)
    EXECUTE FUNCTION messages_follow_owner();

-- The messages already stored (the trigger fires on content and status only).
UPDATE messages m SET owned_search = tag_words(c.owner, m.search)
    FROM contexts c WHERE c.id = m.context_id AND m.search IS NOT NULL;
CREATE INDEX messages_owned_search ON messages USING GIN (owned_search);
