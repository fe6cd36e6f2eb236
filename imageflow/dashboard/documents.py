"""Workflow documents as the pages and the JSON API show them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from imageflow.workflow import TERMINAL

THUMBNAIL_EXTENSIONS = ("jpg", "png")


def jsonable(value: object) -> object:
    """A decoded document with datetimes as ISO 8601 strings, ready for JSON."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def filename(doc: dict[str, Any]) -> str:
    """The name the user uploaded the image under."""
    return str((doc.get("image") or {}).get("filename") or "upload")


def is_terminal(doc: dict[str, Any]) -> bool:
    """True when the workflow will not change any more."""
    return doc.get("status") in TERMINAL


def step_rows(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(agent, step) in the order of the agents recorded at upload, then any others."""
    steps: dict[str, Any] = doc.get("steps") or {}
    names = [n for n in doc.get("agents") or [] if n in steps]
    names += sorted(n for n in steps if n not in names)
    return [(name, steps[name] or {}) for name in names]


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """One row of the upload list."""
    return {
        "workflow_id": doc.get("workflow_id"),
        "filename": filename(doc),
        "status": doc.get("status"),
        "reason": doc.get("reason"),
        "created_at": jsonable(doc.get("created_at")),
        "updated_at": jsonable(doc.get("updated_at")),
    }


def thumbnail_candidates(doc: dict[str, Any]) -> list[str]:
    """Where the thumbnail should be: an object a step recorded under thumbnails/, then the convention."""
    owner, workflow_id = doc.get("owner"), doc.get("workflow_id")
    prefix = f"thumbnails/{owner}/"
    found: list[str] = []
    # No agent is named here: whichever step wrote an object under the owner's thumbnails/ made it.
    for _, step in step_rows(doc):
        output = step.get("output")
        if isinstance(output, dict) and str(output.get("object", "")).startswith(prefix):
            found.append(str(output["object"]))
    found += [f"{prefix}{workflow_id}.{ext}" for ext in THUMBNAIL_EXTENSIONS]
    return list(dict.fromkeys(found))
