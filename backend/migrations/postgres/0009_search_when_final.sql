-- Search indexes a message once it is final, not at every save while it streams: the
-- generated vector was computed again at every UPDATE of the row, so a streamed reply
-- saved every --stream-flush-ms was re-indexed whole at each flush (O(reply) a flush).
-- The vector becomes a plain column that a trigger sets when the message is final and
-- its text or status changed, and clears while it streams.
ALTER TABLE messages ALTER COLUMN search DROP EXPRESSION;

CREATE FUNCTION messages_search_when_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'streaming' THEN
        NEW.search := NULL;
    ELSIF TG_OP = 'INSERT' OR OLD.status = 'streaming' OR NEW.content IS DISTINCT FROM OLD.content THEN
        NEW.search := jsonb_to_tsvector('simple',
            jsonb_path_query_array(NEW.content::jsonb, '$[*].text'), '["string"]');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER messages_search BEFORE INSERT OR UPDATE OF content, status ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_search_when_final();

-- Replies that were streaming when this migration ran are indexed once they end.
UPDATE messages SET search = NULL WHERE status = 'streaming';
