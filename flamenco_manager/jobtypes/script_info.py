"""A job-type script's `JOB_TYPE`, as the engine described it, checked and turned into AvailableJobType JSON.

Rules kept here (Flamenco's, where Flamenco has one):
- The job type's name is the script's file name without `.js`, every `_` replaced by `-`.
- `label` is required; `description` is optional; `settings` is a list of settings (absent: none).
- A setting needs `key` (unique) and `type` (string, int32, float or bool); the other fields Flamenco knows
  are kept as declared when their values have the right shape; anything else is an error naming the file,
  the setting and the field. Keys Flamenco does not know are dropped and named once, so the caller can
  warn about them (a typo such as `requierd` would otherwise silently do nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flamenco_manager.jobtypes import etag
from flamenco_manager.values import describe, is_text

SCRIPT_SUFFIX = ".js"
# Files shorter than this are skipped, as Flamenco does: nothing that short defines a job type.
MIN_SCRIPT_BYTES = 8

SETTING_TYPES = ("string", "int32", "float", "bool")
SETTING_SUBTYPES = ("file_path", "dir_path", "file_name", "hashed_file_path")
SETTING_VISIBILITIES = ("visible", "hidden", "submission", "web")
_JOB_TYPE_FIELDS = ("label", "description", "settings")
# AvailableJobSetting's fields, in the order they are written out.
SETTING_FIELDS = (
    "key",
    "type",
    "subtype",
    "choices",
    "propargs",
    "description",
    "label",
    "default",
    "eval",
    "evalInfo",
    "visible",
    "required",
    "editable",
)


class JobTypeScriptError(Exception):
    """A script's JOB_TYPE cannot be used; `str()` names the file and what is wrong."""

    def __init__(self, filename: str, message: str) -> None:
        super().__init__(f"{filename}: {message}")
        self.filename = filename
        self.message = message


@dataclass(frozen=True)
class ScriptInfo:
    info: dict[str, Any]  # AvailableJobType JSON, etag included
    dropped: tuple[str, ...]  # unknown keys left out, e.g. "JOB_TYPE.icon", "settings[2].requierd"


def job_type_name(filename: str) -> str:
    """`simple_blender_render.js` → `simple-blender-render`."""
    stem = filename[: -len(SCRIPT_SUFFIX)] if filename.endswith(SCRIPT_SUFFIX) else filename
    return stem.replace("_", "-")


def script_info(filename: str, described: Any) -> ScriptInfo:
    """AvailableJobType JSON for the script's JOB_TYPE; JobTypeScriptError when it is not usable."""

    def fail(message: str) -> JobTypeScriptError:
        return JobTypeScriptError(filename, f"JOB_TYPE: {message}")

    if not isinstance(described, Mapping):
        raise fail(f"must be an object, not {describe(described)}")
    dropped = [f"JOB_TYPE.{key}" for key in described if key not in _JOB_TYPE_FIELDS]
    label = described.get("label")
    if not is_text(label):
        raise fail(f"label must be a non-empty string, not {describe(label)}")
    info: dict[str, Any] = {"name": job_type_name(filename), "label": label}
    description = described.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise fail(f"description must be a string, not {describe(description)}")
        info["description"] = description
    raw_settings = described.get("settings")
    if raw_settings is None:
        raw_settings = []
    if not isinstance(raw_settings, list):
        raise fail(f"settings must be a list, not {describe(raw_settings)}")
    settings = []
    keys: set[str] = set()
    for index, raw in enumerate(raw_settings):
        where = f"settings[{index}]"
        if isinstance(raw, Mapping) and isinstance(raw.get("key"), str):
            where = f"settings[{index}] ({raw['key']})"
        try:
            setting = _setting(raw)
        except ValueError as exc:
            raise fail(f"{where}: {exc}") from None
        if setting["key"] in keys:
            raise fail(f"{where}: the key {setting['key']!r} is declared twice")
        keys.add(setting["key"])
        dropped.extend(f"{where}.{key}" for key in raw if key not in SETTING_FIELDS)
        settings.append(setting)
    info["settings"] = settings
    return ScriptInfo(info={**info, "etag": etag(info)}, dropped=tuple(dropped))


def _setting(raw: Any) -> dict[str, Any]:
    """One AvailableJobSetting, its known fields in declared order; ValueError naming a bad field."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"must be an object, not {describe(raw)}")
    key = raw.get("key")
    if not is_text(key):
        raise ValueError(f"key must be a non-empty string, not {describe(key)}")
    kind = raw.get("type")
    if kind not in SETTING_TYPES:
        raise ValueError(f"type must be one of {', '.join(SETTING_TYPES)}, not {describe(kind)}")
    for name, value in raw.items():
        if name in SETTING_FIELDS and value is not None:
            _check_field(kind, name, value)
    return {name: raw[name] for name in raw if name in SETTING_FIELDS and raw[name] is not None}


def _check_field(kind: str, name: str, value: Any) -> None:
    def wrong(what: str) -> ValueError:
        return ValueError(f"{name} must be {what}, not {describe(value)}")

    if name == "subtype" and value not in SETTING_SUBTYPES:
        raise wrong(f"one of {', '.join(SETTING_SUBTYPES)}")
    if name == "visible" and value not in SETTING_VISIBILITIES:
        raise wrong(f"one of {', '.join(SETTING_VISIBILITIES)}")
    if name in ("required", "editable") and not isinstance(value, bool):
        raise wrong("true or false")
    if name in ("description", "label", "eval") and not isinstance(value, str):
        raise wrong("a string")
    if name == "choices" and not (isinstance(value, list) and all(isinstance(c, str) for c in value)):
        raise wrong("a list of strings")
    if name == "propargs" and not isinstance(value, Mapping):
        raise wrong("an object")
    if name == "evalInfo" and not (
        isinstance(value, Mapping)
        and isinstance(value.get("showLinkButton"), bool)
        and isinstance(value.get("description"), str)
    ):
        raise wrong("an object with showLinkButton (true or false) and description (a string)")
    if name == "default" and not value_fits(kind, value):
        raise wrong(f"a value of type {kind}")


def value_fits(kind: str, value: Any) -> bool:
    """Whether a JSON value can be a value of a setting of type `kind`."""
    if isinstance(value, bool):
        return kind == "bool"
    if kind == "string":
        return isinstance(value, str)
    if kind == "int32":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "float":
        return isinstance(value, int | float)
    return False


def placeholder(setting: Mapping[str, Any]) -> Any:
    """A value of the setting's type for trying a script out without a submission (`-check-scripts`).

    Its default when it has one; else the first of its choices; else string "1" (a valid frame range),
    int32 max(1, min), float 24.0 (a frame rate), bool false.
    """
    if "default" in setting:
        return setting["default"]
    if setting.get("choices"):
        return setting["choices"][0]
    kind = setting["type"]
    if kind == "int32":
        minimum = (setting.get("propargs") or {}).get("min")
        return max(1, int(minimum)) if isinstance(minimum, int | float) else 1
    return {"string": "1", "float": 24.0, "bool": False}[kind]
