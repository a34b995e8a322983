"""Meta endpoints: version, configuration, variables, farm status and history, the OpenAPI document."""

from __future__ import annotations

import functools
import json

from aiohttp import web

from flamenco_manager import buildinfo
from flamenco_manager.api.errors import HTTPError
from flamenco_manager.api.keys import CONFIG, FARM_HISTORY, FARM_STATUS, need
from flamenco_manager.services.farm_history import HISTORY_SPAN
from flamenco_manager.variables import CONCRETE_AUDIENCES, SUBMITTER_IS_MANAGER

routes = web.RouteTableDef()


@routes.get("/api/v3/version")
async def version(request: web.Request) -> web.Response:
    config = need(request, CONFIG)
    return web.json_response(buildinfo.version_answer(config.flamenco_version, config.manager_name))


def _audience_platform(request: web.Request) -> tuple[str, str]:
    audience = request.match_info["audience"]
    if audience not in CONCRETE_AUDIENCES:
        raise HTTPError(400, f"audience: must be one of {', '.join(CONCRETE_AUDIENCES)}")
    return audience, request.match_info["platform"].lower()


@routes.get("/api/v3/configuration")
async def configuration(request: web.Request) -> web.Response:
    location = need(request, CONFIG).shared_storage_path
    return web.json_response(
        {"storageLocation": location, "shamanEnabled": False, "isFirstRun": not location}
    )


@routes.get("/api/v3/configuration/shared-storage/{audience}/{platform}")
async def shared_storage(request: web.Request) -> web.Response:
    config = need(request, CONFIG)
    audience, platform = _audience_platform(request)
    variables = config.variables
    # Seen from another platform, the storage path is what the two-way variables make of it there.
    as_variable = variables.replace_two_way_at_submission(
        {"p": config.shared_storage_path}, SUBMITTER_IS_MANAGER
    )
    location = variables.expand_string(as_variable["p"], audience, platform)
    return web.json_response(
        {"location": location, "audience": audience, "platform": platform, "shamanEnabled": False}
    )


@routes.get("/api/v3/configuration/variables/{audience}/{platform}")
async def variables(request: web.Request) -> web.Response:
    audience, platform = _audience_platform(request)
    return web.json_response(need(request, CONFIG).variables.for_audience(audience, platform))


@routes.get("/api/v3/status")
async def farm_status(request: web.Request) -> web.Response:
    return web.json_response({"status": need(request, FARM_STATUS).refresh()})


@routes.get("/api/v3/farm-history")
async def farm_history(request: web.Request) -> web.Response:
    """Ours, for the web UI's overview: the samples of the last hour, oldest first."""
    history = need(request, FARM_HISTORY)
    return web.json_response(
        {
            "interval": history.interval,
            "span": HISTORY_SPAN,
            "samples": [sample.as_json() for sample in history.samples()],
        }
    )


@functools.cache
def _openapi_text() -> str:
    from flamenco_manager.openapi import load_spec

    return json.dumps(load_spec())


@routes.get("/api/v3/openapi3.json")
async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(text=_openapi_text(), content_type="application/json")
