-- The list in order of the latest activity (`GET /api/contexts?order=updated`) pages by
-- (updated_at, id) within one owner.
CREATE INDEX contexts_by_activity ON contexts (owner, updated_at DESC, id DESC);
