"""The HTTP edge: the aiohttp application with every route of the Manager.

Handlers parse the request, call a service and serialise the answer; they reach the services through
typed application keys (`api.keys`), and those that write are marked `@durable` (`api.durable`).
"""

from __future__ import annotations

import pathlib

from aiohttp import web

from flamenco_manager.api import events_api, jobs_api, keys, meta_api, tasks_api, worker_api, worker_mgt
from flamenco_manager.api.access import token_middleware
from flamenco_manager.api.admission import Admission, admission_middleware
from flamenco_manager.api.errors import Middleware, error_middleware, unknown_api_path
from flamenco_manager.api.journal_scope import journal_scope_middleware
from flamenco_manager.services import Manager

WEB_DIR = pathlib.Path(__file__).resolve().parent.parent / "web"
# Bodies larger than this are refused; output-produced images (25 MiB) are the biggest legitimate ones.
CLIENT_MAX_SIZE = 26 * 1024 * 1024


def build_app(manager: Manager) -> web.Application:
    middlewares: list[Middleware] = [
        journal_scope_middleware,
        error_middleware,
        admission_middleware(Admission()),
    ]
    if manager.config.api_token:
        middlewares.insert(2, token_middleware(manager.config.api_token))
    app = web.Application(middlewares=middlewares, client_max_size=CLIENT_MAX_SIZE)
    _provide_services(app, manager)
    for module in (worker_api, worker_mgt, jobs_api, tasks_api, meta_api, events_api):
        app.router.add_routes(module.routes)
    # Before the static routes: the web interface's files would otherwise claim every unknown path.
    app.router.add_route("*", "/api/{tail:.*}", unknown_api_path)
    app.router.add_static("/job-files", manager.storage, follow_symlinks=False)
    if WEB_DIR.is_dir():
        app.router.add_get("/", _index)
        app.router.add_static("/", WEB_DIR)
        app.on_response_prepare.append(_revalidate_web_files)
    return app


def _provide_services(app: web.Application, manager: Manager) -> None:
    keys.provide(app, keys.CONFIG, manager.config)
    keys.provide(app, keys.STORE, manager.store)
    keys.provide(app, keys.STORAGE, manager.storage)
    keys.provide(app, keys.HUB, manager.hub)
    keys.provide(app, keys.DURABILITY, manager.durability)
    keys.provide(app, keys.JOBS, manager.jobs)
    keys.provide(app, keys.JOB_DELETER, manager.job_deleter)
    keys.provide(app, keys.TASKS, manager.tasks)
    keys.provide(app, keys.TAGS, manager.tags)
    keys.provide(app, keys.WORKERS, manager.workers)
    keys.provide(app, keys.SCHEDULER, manager.scheduler)
    keys.provide(app, keys.TASK_UPDATES, manager.task_updates)
    keys.provide(app, keys.SLEEP_SCHEDULER, manager.sleep_scheduler)
    keys.provide(app, keys.THUMBNAILS, manager.thumbnails)
    keys.provide(app, keys.FARM_STATUS, manager.farm_status)
    keys.provide(app, keys.FARM_HISTORY, manager.farm_history)
    keys.provide(app, keys.TASK_LOGS, manager.logs)


async def _revalidate_web_files(request: web.Request, response: web.StreamResponse) -> None:
    # Without this a browser may keep using cached page modules after the Manager is upgraded and
    # mix old and new files; with it every load asks (ETag) and mostly gets a 304.
    if not request.path.startswith(("/api/", "/job-files/")):
        response.headers.setdefault("Cache-Control", "no-cache")


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")
