-- What a turn is given besides its message (the OpenAI API's function tools and
-- instructions), as JSON; NULL for none. On the context while its turn runs or rests, and
-- on a queued message until its turn starts.
ALTER TABLE contexts ADD COLUMN turn_options TEXT;
ALTER TABLE queued_messages ADD COLUMN turn_options TEXT;
