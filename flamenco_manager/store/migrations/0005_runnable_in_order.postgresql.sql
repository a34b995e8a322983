-- Schema version 5: a job's runnable tasks in the scheduler's order (priority, then position), whatever
-- their type. The scheduler walks the jobs in order and takes the first task of each that the worker may
-- run; with only the by-type index, PostgreSQL 15 read and sorted every runnable task of the job for each
-- assignment (a 1,000-task job: ~12 ms per task handed out) instead of stopping at the first one.
CREATE INDEX tasks_runnable_in_order ON tasks (job_id, priority DESC, index_in_job)
    WHERE status IN ('queued', 'soft-failed') AND waiting_on = 0;
