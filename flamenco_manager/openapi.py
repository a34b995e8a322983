"""The Manager's OpenAPI document (`openapi/flamenco-openapi.json`), read once from the package."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

SPEC_FILE = "flamenco-openapi.json"


@functools.cache
def spec_bytes() -> bytes:
    """The document as stored, for serving at /api/v3/openapi3.json."""
    return resources.files("flamenco_manager").joinpath("openapi", SPEC_FILE).read_bytes()


@functools.cache
def load_spec() -> dict[str, Any]:
    """The parsed document; every caller gets the same object, so treat it as read-only."""
    return json.loads(spec_bytes())
