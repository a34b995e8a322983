"""`POST /api/v3/worker-mgt/workers/setstatus` (ours): one status request for many workers, one commit.

It must do for each worker what that worker's own `setstatus` request does (stored request, event,
wake-up of its held long-poll, the same refusal), written in one unit of writes.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from flamenco_manager.api.worker_mgt import BULK_STATUS_MAX_WORKERS
from flamenco_manager.openapi import load_spec
from flamenco_manager.store.sqlite import SQLiteStore
from tests.manager.conftest import API, FakeWorker, Farm, eventually
from tests.manager.test_events import Stream

pytestmark = pytest.mark.timeout(120)

BULK = f"{API}/worker-mgt/workers/setstatus"
# Event fields that differ between two workers or two moments, not between ways of asking.
VARYING = ("id", "name", "updated", "last_seen")


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    # Held requests last far longer than a test waits for their answer: only a wake-up answers them.
    return {"long_poll_max": 60.0}


def single(worker_uuid: str) -> str:
    return f"{API}/worker-mgt/workers/{worker_uuid}/setstatus"


async def _awake_workers(farm: Farm, count: int) -> list[FakeWorker]:
    return [await farm.awake_worker() for _ in range(count)]


async def test_applied_to_every_worker(farm: Farm) -> None:
    workers = await _awake_workers(farm, 4)
    reply = await farm.client.post(
        BULK, {"workers": [w.uuid for w in workers], "status": "asleep", "is_lazy": False}
    )
    assert reply.status == 200, reply.body
    assert reply.body == {"applied": [w.uuid for w in workers], "refused": []}
    for worker in workers:
        shown = await farm.worker(worker.uuid)
        assert shown["status"] == "awake"
        assert shown["status_change"] == {"status": "asleep", "is_lazy": False}
    # requesting the current status cancels the pending request, as the single request does
    reply = await farm.client.post(
        BULK, {"workers": [w.uuid for w in workers], "status": "awake", "is_lazy": True}
    )
    assert reply.body["applied"] == [w.uuid for w in workers]
    for worker in workers:
        assert "status_change" not in await farm.worker(worker.uuid)


async def test_refusals_are_those_of_the_single_request(farm: Farm) -> None:
    able, deleted, awake_other = await _awake_workers(farm, 3)
    unable = await farm.register()
    assert await unable.sign_on(can_restart=False) == "awake"
    await unable.ack("awake")
    assert (await farm.client.delete(f"{API}/worker-mgt/workers/{deleted.uuid}")).status == 204
    unknown = str(uuid.uuid4())
    asked = [able.uuid, deleted.uuid, unknown, unable.uuid, awake_other.uuid]

    reply = await farm.client.post(BULK, {"workers": asked, "status": "restart", "is_lazy": True})
    assert reply.status == 200, reply.body
    assert reply.body["applied"] == [able.uuid, awake_other.uuid]
    refused = reply.body["refused"]
    assert [r["id"] for r in refused] == [deleted.uuid, unknown, unable.uuid]
    for refusal in refused:
        own = await farm.client.post(single(refusal["id"]), {"status": "restart", "is_lazy": True})
        assert (refusal["code"], refusal["message"]) == (own.status, own.body["message"])
    assert [r["code"] for r in refused] == [404, 404, 412]
    assert "status_change" not in await farm.worker(unable.uuid)
    assert (await farm.worker(able.uuid))["status_change"] == {"status": "restart", "is_lazy": True}


async def _worker_events(stream: Stream, until_worker: str) -> list[dict[str, Any]]:
    """/workers events up to the first one of `until_worker` (a marker: events arrive in order)."""
    events: list[dict[str, Any]] = []
    while True:
        topic, payload = await stream.next(within=10.0)
        if topic != "/workers":
            continue
        if payload["id"] == until_worker:
            return events
        events.append(payload)


def _comparable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept = [{k: v for k, v in e.items() if k not in VARYING} for e in events]
    return sorted(kept, key=repr)


async def test_events_are_those_of_one_request_per_worker(farm: Farm) -> None:
    by_bulk = await _awake_workers(farm, 5)
    one_by_one = await _awake_workers(farm, 5)
    marker = await farm.awake_worker()
    response = await farm.client.session.get(f"{farm.client.base}{API}/events?topics=workers")
    assert response.status == 200
    stream = Stream(response)
    try:
        gone = str(uuid.uuid4())
        body = {"workers": [w.uuid for w in by_bulk] + [gone], "status": "asleep", "is_lazy": True}
        assert (await farm.client.post(BULK, body)).status == 200
        assert (
            await farm.client.post(single(marker.uuid), {"status": "awake", "is_lazy": False})
        ).status == 204
        bulk_events = await _worker_events(stream, marker.uuid)

        for worker in one_by_one:
            reply = await farm.client.post(single(worker.uuid), {"status": "asleep", "is_lazy": True})
            assert reply.status == 204
        assert (await farm.client.post(single(gone), {"status": "asleep", "is_lazy": True})).status == 404
        assert (
            await farm.client.post(single(marker.uuid), {"status": "awake", "is_lazy": False})
        ).status == 204
        single_events = await _worker_events(stream, marker.uuid)
    finally:
        response.close()
    assert sorted(e["id"] for e in bulk_events) == sorted(w.uuid for w in by_bulk)
    assert len(single_events) == len(one_by_one)
    assert _comparable(bulk_events) == _comparable(single_events)
    assert all(e["status_change"] == {"status": "asleep", "is_lazy": True} for e in bulk_events)


async def test_held_state_requests_are_answered_at_once(farm: Farm) -> None:
    workers = await _awake_workers(farm, 4)
    hub = farm.manager.hub
    held = [asyncio.create_task(w.state(wait=60)) for w in workers]
    stored = [farm.manager.store.get_worker(w.uuid) for w in workers]
    ids = {w.id for w in stored if w is not None}

    await eventually(lambda: ids <= hub.held_workers())
    reply = await farm.client.post(
        BULK, {"workers": [w.uuid for w in workers], "status": "asleep", "is_lazy": False}
    )
    assert reply.status == 200
    # each held request answers with the new request, long before its 60 s are up
    answers = await asyncio.wait_for(asyncio.gather(*held), timeout=10.0)
    for answer in answers:
        assert answer.status == 200
        assert answer.body["status_requested"] == "asleep"


@pytest.mark.sqlite_only("reads the SQLite connection's statement trace")
async def test_one_unit_of_writes_and_one_commit(farm: Farm) -> None:
    workers = await _awake_workers(farm, 20)
    store = farm.manager.store
    assert isinstance(store, SQLiteStore)
    statements: list[str] = []
    store.trace_statements(statements.append)
    try:
        reply = await farm.client.post(
            BULK, {"workers": [w.uuid for w in workers], "status": "offline", "is_lazy": True}
        )
    finally:
        store.trace_statements(None)
    assert reply.status == 200 and len(reply.body["applied"]) == len(workers)
    updates = [i for i, s in enumerate(statements) if s.startswith("UPDATE workers SET status_requested")]
    assert len(updates) == len(workers)
    between = statements[updates[0] : updates[-1] + 1]
    # every write inside one savepoint of one batch: no commit, release or new batch in between
    assert not [s for s in between if s.split()[0] in ("COMMIT", "RELEASE", "BEGIN", "SAVEPOINT")], between
    # and the answer came after that batch was committed
    assert "COMMIT" in statements[updates[-1] :]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"workers": "not a list", "status": "asleep", "is_lazy": True}, "workers"),
        ({"status": "asleep", "is_lazy": True}, "workers"),
        ({"workers": [], "status": "asleep", "is_lazy": True}, "workers"),
        ({"workers": ["nope"], "status": "asleep", "is_lazy": True}, "workers[0]"),
        ({"workers": [7], "status": "asleep", "is_lazy": True}, "workers[0]"),
        ({"workers": ["W", "W"], "status": "asleep", "is_lazy": True}, "workers[1]"),
        ({"workers": ["W"], "status": "dozing", "is_lazy": True}, "status"),
        ({"workers": ["W"], "is_lazy": True}, "status"),
        ({"workers": ["W"], "status": "asleep"}, "is_lazy"),
        ({"workers": ["W"], "status": "asleep", "is_lazy": "yes"}, "is_lazy"),
        ({"workers": ["MANY"], "status": "asleep", "is_lazy": True}, "workers"),
    ],
)
async def test_bad_input_names_the_field(farm: Farm, body: dict[str, Any], named: str) -> None:
    worker = await farm.awake_worker()
    if body.get("workers") == ["MANY"]:
        body["workers"] = [str(uuid.uuid4()) for _ in range(BULK_STATUS_MAX_WORKERS + 1)]
    elif isinstance(body.get("workers"), list):
        body["workers"] = [worker.uuid if w == "W" else w for w in body["workers"]]
    reply = await farm.client.post(BULK, body)
    assert reply.status == 400, reply.body
    assert reply.body["message"].startswith(f"{named}: "), reply.body
    assert "status_change" not in await farm.worker(worker.uuid)  # nothing half-written


async def test_not_json_and_not_an_object(farm: Farm) -> None:
    async with farm.client.session.post(
        farm.client.base + BULK, data=b"{", headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 400
    reply = await farm.client.post(BULK, ["a list"])
    assert reply.status == 400 and reply.body["message"].startswith("body: ")


def test_the_document_states_the_limit() -> None:
    schema = load_spec()["components"]["schemas"]["WorkersStatusChangeRequest"]
    assert schema["properties"]["workers"]["maxItems"] == BULK_STATUS_MAX_WORKERS


async def test_uppercase_uuids_name_the_same_worker(farm: Farm) -> None:
    worker = await farm.awake_worker()
    reply = await farm.client.post(
        BULK, {"workers": [worker.uuid.upper()], "status": "asleep", "is_lazy": True}
    )
    assert reply.body == {"applied": [worker.uuid], "refused": []}
    reply = await farm.client.post(
        BULK, {"workers": [worker.uuid, worker.uuid.upper()], "status": "asleep", "is_lazy": True}
    )
    assert reply.status == 400 and reply.body["message"].startswith("workers[1]: ")
