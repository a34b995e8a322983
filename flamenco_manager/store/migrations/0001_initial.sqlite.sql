-- Schema of the Manager database, version 1.
-- Times are Unix seconds (REAL). UUIDs are the public identifiers; integer ids are internal.

CREATE TABLE workers (
    id                   INTEGER PRIMARY KEY,
    uuid                 TEXT    NOT NULL UNIQUE,
    secret_hash          TEXT    NOT NULL,
    name                 TEXT    NOT NULL,
    address              TEXT    NOT NULL DEFAULT '',
    platform             TEXT    NOT NULL DEFAULT '',
    software             TEXT    NOT NULL DEFAULT '',
    status               TEXT    NOT NULL DEFAULT '',
    status_requested     TEXT    NOT NULL DEFAULT '',
    lazy_status_request  INTEGER NOT NULL DEFAULT 0,
    can_restart          INTEGER NOT NULL DEFAULT 0,
    supported_task_types TEXT    NOT NULL DEFAULT '',   -- comma-joined, lowercase
    created_at           REAL    NOT NULL,
    updated_at           REAL    NOT NULL,
    last_seen_at         REAL,
    deleted_at           REAL                           -- soft delete
);

CREATE TABLE worker_tags (
    id          INTEGER PRIMARY KEY,
    uuid        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT ''
);

CREATE TABLE worker_tag_membership (
    worker_id INTEGER NOT NULL REFERENCES workers(id) ON DELETE CASCADE,
    tag_id    INTEGER NOT NULL REFERENCES worker_tags(id) ON DELETE CASCADE,
    PRIMARY KEY (worker_id, tag_id)
) WITHOUT ROWID;

CREATE TABLE sleep_schedules (
    worker_id    INTEGER PRIMARY KEY REFERENCES workers(id) ON DELETE CASCADE,
    is_active    INTEGER NOT NULL,
    days_of_week TEXT    NOT NULL DEFAULT '',
    start_time   TEXT    NOT NULL DEFAULT '',   -- HH:MM, '' = start of day
    end_time     TEXT    NOT NULL DEFAULT '',   -- HH:MM, '' = end of day
    next_check   REAL
);

CREATE TABLE jobs (
    id                  INTEGER PRIMARY KEY,
    uuid                TEXT    NOT NULL UNIQUE,
    name                TEXT    NOT NULL,
    job_type            TEXT    NOT NULL,
    type_etag           TEXT    NOT NULL DEFAULT '',
    priority            INTEGER NOT NULL,
    status              TEXT    NOT NULL,
    activity            TEXT    NOT NULL DEFAULT '',
    settings            TEXT    NOT NULL DEFAULT '{}',  -- JSON object
    metadata            TEXT    NOT NULL DEFAULT '{}',  -- JSON object
    submitter_platform  TEXT    NOT NULL DEFAULT '',
    shaman_checkout_id  TEXT    NOT NULL DEFAULT '',
    worker_tag_id       INTEGER REFERENCES worker_tags(id) ON DELETE SET NULL,
    steps_completed     INTEGER NOT NULL DEFAULT 0,     -- kept equal to the sum over tasks by triggers
    steps_total         INTEGER NOT NULL DEFAULT 0,
    runnable_tasks      INTEGER NOT NULL DEFAULT 0,     -- tasks in the tasks_runnable index, kept by triggers
    created_at          REAL    NOT NULL,
    updated_at          REAL    NOT NULL,
    delete_requested_at REAL
);
CREATE INDEX jobs_by_status ON jobs (status);
-- The scheduler walks this index in priority order and only sees jobs that have something to run.
CREATE INDEX jobs_schedulable ON jobs (priority DESC, created_at, id)
    WHERE runnable_tasks > 0 AND status IN ('active', 'queued');

CREATE TABLE tasks (
    id              INTEGER PRIMARY KEY,
    uuid            TEXT    NOT NULL UNIQUE,
    job_id          INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    index_in_job    INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    worker_id       INTEGER REFERENCES workers(id) ON DELETE SET NULL,  -- last worker assigned
    last_touched_at REAL,
    commands        TEXT    NOT NULL DEFAULT '[]',  -- JSON list of {name, parameters, total_step_count}
    activity        TEXT    NOT NULL DEFAULT '',
    steps_completed INTEGER NOT NULL DEFAULT 0,
    steps_total     INTEGER NOT NULL DEFAULT 1,
    waiting_on      INTEGER NOT NULL DEFAULT 0,  -- dependencies not yet completed, kept by triggers
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    UNIQUE (job_id, index_in_job)
);
-- The scheduler walks this index in order and stops at the first eligible task; tasks still waiting
-- for dependencies are not in it, so a long chain of blocked tasks costs nothing.
CREATE INDEX tasks_runnable ON tasks (job_id, priority DESC, index_in_job)
    WHERE status IN ('queued', 'soft-failed') AND waiting_on = 0;
CREATE INDEX tasks_by_job_status ON tasks (job_id, status);
CREATE INDEX tasks_by_worker ON tasks (worker_id, status);
CREATE INDEX tasks_active_touched ON tasks (last_touched_at) WHERE status = 'active';

CREATE TABLE task_dependencies (
    task_id       INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    dependency_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    PRIMARY KEY (task_id, dependency_id)
) WITHOUT ROWID;
CREATE INDEX task_dependents ON task_dependencies (dependency_id);

-- Distinct workers that failed a task; emptied when the task or its job is requeued.
CREATE TABLE task_failures (
    task_id    INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    worker_id  INTEGER NOT NULL REFERENCES workers(id) ON DELETE CASCADE,
    created_at REAL    NOT NULL,
    PRIMARY KEY (task_id, worker_id)
) WITHOUT ROWID;
CREATE INDEX task_failures_by_worker ON task_failures (worker_id);

CREATE TABLE job_blocks (
    job_id     INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    worker_id  INTEGER NOT NULL REFERENCES workers(id) ON DELETE CASCADE,
    task_type  TEXT    NOT NULL,
    created_at REAL    NOT NULL,
    PRIMARY KEY (job_id, worker_id, task_type)
) WITHOUT ROWID;

CREATE TABLE last_rendered (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    job_id    INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE
);

-- Per-job task counts by status, maintained by triggers so the job state machine never has to count
-- a large job's tasks. A row per status is created with the job.
CREATE TABLE job_task_counts (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, status)
) WITHOUT ROWID;

CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
    UPDATE job_task_counts SET n = n + 1 WHERE job_id = NEW.job_id AND status = NEW.status;
    UPDATE jobs SET steps_total = steps_total + NEW.steps_total,
                    steps_completed = steps_completed + NEW.steps_completed,
                    runnable_tasks = runnable_tasks
                                     + (NEW.status IN ('queued', 'soft-failed') AND NEW.waiting_on = 0)
     WHERE id = NEW.job_id;
END;

CREATE TRIGGER tasks_count_status AFTER UPDATE OF status ON tasks WHEN OLD.status <> NEW.status BEGIN
    UPDATE job_task_counts SET n = n - 1 WHERE job_id = OLD.job_id AND status = OLD.status;
    UPDATE job_task_counts SET n = n + 1 WHERE job_id = NEW.job_id AND status = NEW.status;
END;

-- A task's dependents wait for it until it is completed.
CREATE TRIGGER tasks_dependents_wait AFTER UPDATE OF status ON tasks
WHEN (OLD.status = 'completed') <> (NEW.status = 'completed') BEGIN
    UPDATE tasks SET waiting_on = waiting_on + (CASE WHEN NEW.status = 'completed' THEN -1 ELSE 1 END)
     WHERE id IN (SELECT task_id FROM task_dependencies WHERE dependency_id = NEW.id);
END;

CREATE TRIGGER task_dependency_insert AFTER INSERT ON task_dependencies BEGIN
    UPDATE tasks SET waiting_on = waiting_on + 1
     WHERE id = NEW.task_id
       AND (SELECT status FROM tasks WHERE id = NEW.dependency_id) <> 'completed';
END;

CREATE TRIGGER tasks_runnable_count AFTER UPDATE OF status, waiting_on ON tasks
WHEN (NEW.status IN ('queued', 'soft-failed') AND NEW.waiting_on = 0)
  <> (OLD.status IN ('queued', 'soft-failed') AND OLD.waiting_on = 0) BEGIN
    UPDATE jobs SET runnable_tasks = runnable_tasks
                                     + (CASE WHEN NEW.status IN ('queued', 'soft-failed')
                                                  AND NEW.waiting_on = 0 THEN 1 ELSE -1 END)
     WHERE id = NEW.job_id;
END;

CREATE TRIGGER tasks_count_steps AFTER UPDATE OF steps_completed, steps_total ON tasks
WHEN OLD.steps_completed <> NEW.steps_completed OR OLD.steps_total <> NEW.steps_total BEGIN
    UPDATE jobs SET steps_completed = steps_completed + NEW.steps_completed - OLD.steps_completed,
                    steps_total = steps_total + NEW.steps_total - OLD.steps_total
     WHERE id = NEW.job_id;
END;
