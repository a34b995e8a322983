"""Job rows written straight into a store, for tests that need many or big jobs (submitting thousands over
HTTP would take minutes), or exact priorities and times."""

from __future__ import annotations

import time
import uuid

from flamenco_manager.model import Job, JobStatus


def queued_job(
    *,
    name: str = "stored directly",
    priority: int = 50,
    created_at: float | None = None,
    updated_at: float | None = None,
) -> Job:
    """A queued `echo-sleep-test` job, for `store.create_job` (which gives it its id); its tasks are added
    by the caller. The times default to now; `updated_at` to `created_at`."""
    created = time.time() if created_at is None else created_at
    return Job(
        id=0,
        uuid=str(uuid.uuid4()),
        name=name,
        job_type="echo-sleep-test",
        type_etag="",
        priority=priority,
        status=JobStatus.QUEUED,
        activity="",
        settings_json="{}",
        metadata_json="{}",
        submitter_platform="linux",
        shaman_checkout_id="",
        worker_tag_id=None,
        steps_completed=0,
        steps_total=0,
        created_at=created,
        updated_at=created if updated_at is None else updated_at,
        delete_requested_at=None,
    )
