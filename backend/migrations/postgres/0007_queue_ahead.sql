-- A message sent with `if_busy: "interrupt"` runs ahead of the other queued ones. Stored,
-- so the instance running the turn puts it first also when another instance queued it.
ALTER TABLE queued_messages ADD COLUMN ahead BIGINT NOT NULL DEFAULT 0;
