-- Users: every context belongs to the user who created it. Chats stored before users
-- existed belong to `local`, the one user of `--auth none`. Lists are per owner, newest
-- first, so the index leads with the owner.
ALTER TABLE contexts ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
DROP INDEX contexts_by_creation;
CREATE INDEX contexts_by_owner ON contexts (owner, created_at DESC, id DESC);
