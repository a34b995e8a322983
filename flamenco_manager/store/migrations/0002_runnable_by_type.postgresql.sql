-- Schema version 2: the scheduler's index is split by task type.
DROP INDEX tasks_runnable;
CREATE INDEX tasks_runnable ON tasks (job_id, type, priority DESC, index_in_job)
    WHERE status IN ('queued', 'soft-failed') AND waiting_on = 0;
