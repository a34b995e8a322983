-- Schema version 4: the counting triggers, with the same effects, in a form whose cost stays linear in the
-- rows a statement changes however PostgreSQL plans it; and a function that deletes a chunk of a job's
-- tasks (at the end).
--
-- A statement of a PL/pgSQL function that has no variable in it is planned once per session, generically,
-- for the sizes of the transition tables at its first run: a session whose first task updates changed one
-- row each kept joining `old_tasks` with `new_tasks` as nested loops, so that a 20,000-task job's
-- dependencies then took minutes (each of 20,000 rows compared with each other). Here:
-- - the transition tables are only aggregated, never joined with each other or with a table: what a status,
--   step or runnable count changes by is the new rows' sum minus the old rows' (an UPDATE keeps the set of
--   rows; sums do not depend on pairing them up), and a task's completion changes its dependents by -1 for a
--   new completed row, +1 for an old one;
-- - statements that touch tables take what the aggregates found as array variables, so they are planned
--   for each run with the arrays' real lengths (plan_cache_mode is forced per function: a lookup by index
--   for a few rows, a hash join for thousands).

CREATE OR REPLACE FUNCTION tasks_count_update() RETURNS trigger LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    r record;
    changed bigint[];
    deltas integer[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_tasks) THEN
        RETURN NULL;  -- a statement that changed no row (statement triggers fire anyway)
    END IF;
    FOR r IN SELECT job_id, status, sum(d)::integer AS d FROM (
                 SELECT job_id, status, 1 AS d FROM new_tasks
                 UNION ALL
                 SELECT job_id, status, -1 FROM old_tasks
             ) s GROUP BY job_id, status HAVING sum(d) <> 0 LOOP
        UPDATE job_task_counts SET n = n + r.d WHERE job_id = r.job_id AND status = r.status;
    END LOOP;
    FOR r IN SELECT job_id, sum(sc)::integer AS sc, sum(st)::integer AS st, sum(rn)::integer AS rn FROM (
                 SELECT job_id, steps_completed AS sc, steps_total AS st,
                        flamenco_runnable(status, waiting_on) AS rn FROM new_tasks
                 UNION ALL
                 SELECT job_id, -steps_completed, -steps_total, -flamenco_runnable(status, waiting_on)
                   FROM old_tasks
             ) s GROUP BY job_id LOOP
        IF r.sc <> 0 OR r.st <> 0 OR r.rn <> 0 THEN
            UPDATE jobs SET steps_completed = steps_completed + r.sc, steps_total = steps_total + r.st,
                            runnable_tasks = runnable_tasks + r.rn
             WHERE id = r.job_id;
        END IF;
    END LOOP;
    -- Tasks that became completed (-1 for their dependents) or stopped being so (+1).
    SELECT array_agg(id), array_agg(d) INTO changed, deltas FROM (
        SELECT id, sum(d)::integer AS d FROM (
            SELECT id, -1 AS d FROM new_tasks WHERE status = 'completed'
            UNION ALL
            SELECT id, 1 FROM old_tasks WHERE status = 'completed'
        ) c GROUP BY id HAVING sum(d) <> 0
    ) s;
    IF changed IS NOT NULL THEN
        -- One statement for all dependents: each UPDATE of tasks runs this trigger again (their status does
        -- not change, so it goes no deeper).
        UPDATE tasks t SET waiting_on = t.waiting_on + x.d
          FROM (SELECT td.task_id, sum(c.d)::integer AS d
                  FROM unnest(changed, deltas) AS c(id, d)
                  JOIN task_dependencies td ON td.dependency_id = c.id
                 GROUP BY td.task_id) x
         WHERE t.id = x.task_id AND x.d <> 0;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION task_dependency_insert() RETURNS trigger LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    waiting bigint[];
    waited_for bigint[];
BEGIN
    SELECT array_agg(task_id), array_agg(dependency_id) INTO waiting, waited_for FROM inserted_dependencies;
    IF waiting IS NULL THEN
        RETURN NULL;  -- a statement that changed no row (statement triggers fire anyway)
    END IF;
    -- One statement (each UPDATE of tasks runs the counting trigger, which rewrites the job's row).
    UPDATE tasks t SET waiting_on = t.waiting_on + x.k
      FROM (SELECT d.task_id, count(*)::integer AS k FROM unnest(waiting, waited_for) AS d(task_id, dependency_id)
              JOIN tasks dt ON dt.id = d.dependency_id WHERE dt.status <> 'completed' GROUP BY d.task_id) x
     WHERE t.id = x.task_id;
    RETURN NULL;
END $$;

-- Deleting a chunk of a job's tasks. Each deleted task runs its foreign keys' cascades (dependencies,
-- failures) as one query per row: planned once for the function's session, not per row as under the
-- loop connection's forced custom plans (600 tasks: ~15 ms against ~45 ms), so a big job's chunks keep
-- each loop turn short.
CREATE FUNCTION flamenco_delete_tasks(of_job bigint, most integer) RETURNS integer LANGUAGE plpgsql
SET plan_cache_mode = auto AS $$
DECLARE
    deleted integer;
BEGIN
    DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE job_id = of_job LIMIT most);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END $$;
