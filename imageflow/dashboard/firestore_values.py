"""Decode Firestore REST typed values (the JSON wire format) into plain Python values."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any


def decode_value(value: Mapping[str, Any]) -> Any:  # noqa: ANN401 - a document field holds any type
    """One typed value ({"stringValue": ...}, {"mapValue": ...}, ...) as a Python value."""
    if "nullValue" in value:
        return None
    if "stringValue" in value:
        return str(value["stringValue"])
    if "booleanValue" in value:
        return bool(value["booleanValue"])
    if "integerValue" in value:
        # The REST API sends 64-bit integers as strings so that JavaScript does not lose precision.
        return int(value["integerValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "timestampValue" in value:
        return parse_timestamp(str(value["timestampValue"]))
    if "mapValue" in value:
        return decode_fields(value["mapValue"].get("fields") or {})
    if "arrayValue" in value:
        return [decode_value(v) for v in value["arrayValue"].get("values") or []]
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    if "referenceValue" in value:
        return str(value["referenceValue"])
    if "geoPointValue" in value:
        point = value["geoPointValue"]
        return {"latitude": point.get("latitude", 0.0), "longitude": point.get("longitude", 0.0)}
    raise ValueError(f"unknown Firestore value type: {sorted(value)}")


def decode_fields(fields: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A document's or map's "fields" as a dict."""
    return {name: decode_value(value) for name, value in fields.items()}


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp (nanosecond precision, "Z" suffix) as an aware datetime."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, sep, rest = text.partition(".")
    if sep:
        # Python parses at most microseconds: cut the fraction to 6 digits, keep the offset after it.
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        offset = rest[len(digits) :]
        text = f"{main}.{digits[:6].ljust(6, '0')}{offset}"
    return datetime.fromisoformat(text)
