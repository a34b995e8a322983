-- Schema version 2: the scheduler's index is split by task type.
-- A worker that cannot run the first runnable tasks of a job (other task types) used to walk all of
-- them; now it looks up each of its own types directly.
DROP INDEX tasks_runnable;
CREATE INDEX tasks_runnable ON tasks (job_id, type, priority DESC, index_in_job)
    WHERE status IN ('queued', 'soft-failed') AND waiting_on = 0;
