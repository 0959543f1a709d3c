-- Versions are shown to pollers before they are stored (streamed chunks between flushes).
-- A writer records here the highest version it may show before its next save, so after a
-- crash the next writer starts above every version a client could have seen. It equals
-- `version` (or is 0, for rows stored before it existed) whenever the context rests with
-- nothing shown beyond what is stored.
ALTER TABLE contexts ADD COLUMN version_ceiling BIGINT NOT NULL DEFAULT 0;
-- A turn stored mid-way by an earlier release may have shown up to 1000 versions beyond
-- the stored one (the bound that release kept); its resumption starts above them.
UPDATE contexts SET version_ceiling = version + 1000
WHERE state NOT IN ('Idle', 'AwaitingToolApproval', 'Failed');
