-- Schema version 3: the key of the last task update applied, so a worker resending an update whose
-- answer it never got (the Manager died after committing it) does not add its log lines twice.
ALTER TABLE tasks ADD COLUMN last_update_key TEXT NOT NULL DEFAULT '';
