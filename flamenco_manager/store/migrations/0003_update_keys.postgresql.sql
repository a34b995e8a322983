-- Schema version 3: the key of the last task update applied (see the SQLite script of this version).
ALTER TABLE tasks ADD COLUMN last_update_key text NOT NULL DEFAULT '';
