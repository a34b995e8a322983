"""`GET /api/v3/events`: Server-Sent Events with Flamenco's payloads, filtered by topic, job and task."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.manager.conftest import API, Farm


class Stream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, within: float = 3.0) -> tuple[str, dict[str, Any]]:
        async def read() -> tuple[str, dict[str, Any]]:
            topic = None
            while True:
                line = (await self.response.content.readline()).decode().rstrip("\n")
                if line.startswith("event: "):
                    topic = line[7:]
                elif line.startswith("data: ") and topic:
                    return topic, json.loads(line[6:])

        return await asyncio.wait_for(read(), within)


async def _open(farm: Farm, query: str = "") -> tuple[aiohttp.ClientResponse, Stream]:
    response = await farm.client.session.get(f"{farm.client.base}{API}/events{query}")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response, Stream(response)


async def test_worker_and_job_events(farm: Farm) -> None:
    response, stream = await _open(farm, "?topics=workers,jobs")
    try:
        worker = await farm.awake_worker()
        topic, payload = await stream.next()
        assert topic == "/workers" and payload["id"] == worker.uuid
        assert {"id", "name", "updated", "status", "version", "can_restart"} <= set(payload)
        await farm.client.post(
            f"{API}/worker-mgt/workers/{worker.uuid}/setstatus", {"status": "asleep", "is_lazy": True}
        )
        while True:
            topic, payload = await stream.next()
            if payload.get("status_change"):
                break
        assert payload["status_change"] == {"status": "asleep", "is_lazy": True}
        job = await farm.submit_echo()
        topic, payload = await stream.next()
        assert topic == "/jobs" and payload["id"] == job["id"] and payload["type"] == "echo-sleep-test"
        assert {
            "id",
            "updated",
            "status",
            "type",
            "priority",
            "refresh_tasks",
            "steps_completed",
            "steps_total",
        } <= set(payload)
    finally:
        response.close()


async def test_task_and_tasklog_events_filtered_by_task(farm: Farm) -> None:
    worker = await farm.awake_worker(("misc",))
    job = await farm.submit_echo(repeats=1)
    tasks = await farm.tasks(job["id"])
    response, stream = await _open(farm, f"?topics=task,tasklog&task={tasks[0]['id']}")
    try:
        task = (await worker.fetch()).body
        assert task["uuid"] == tasks[0]["id"]
        seen: list[tuple[str, dict]] = []
        await worker.update(task["uuid"], log="line one")
        while not any(t == "/tasklog" and p["log"] == "line one\n" for t, p in seen):
            seen.append(await stream.next())
        assert any(t == "/task" and p["status"] == "active" and p["job_id"] == job["id"] for t, p in seen)
        assert all(p.get("id", p.get("task_id")) == task["uuid"] for _, p in seen)
    finally:
        response.close()


async def test_unknown_topic_is_400(farm: Farm) -> None:
    reply = await farm.client.get(f"{API}/events?topics=weather", validate=False)
    assert reply.status == 400 and "topics" in reply.body["message"]
