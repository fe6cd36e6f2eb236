"""The GPS leak finder of the privacy scenario: every form of the position found, no false alarm."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import allure
import pytest

from fixtures.privacy import gps_leaks
from fixtures.reporting import EPIC

pytestmark = [allure.epic(EPIC), allure.feature("GPS leak finder")]

# Timestamps whose digits spell the fixture's raw seconds (58.8) and both rounded coordinates.
TIMES = [
    datetime(2026, 11, 30, 13, 42, 58, 809905, tzinfo=UTC),
    datetime(2026, 11, 30, 9, 1, 52, 516333, tzinfo=UTC),
    datetime(2026, 11, 30, 9, 1, 13, 377639, tzinfo=UTC),
]


@pytest.mark.parametrize(
    "document",
    [
        {"steps": {"analysis": {"finished_at": TIMES[0]}}, "events": [{"at": TIMES[0]}]},
        {"events": [{"at": t} for t in TIMES]},
        {"steps": {"exif": {"output": {"taken_at": "2026-11-30T13:42:58.809905"}}}},
        {"steps": {"exif": {"output": {"note": "finished 09:01:52.516333, then 09:01:13.377639"}}}},
        {"image": {"gps_removed": True, "width": 640, "height": 480, "brightness": 58.8}},
        {"sizes": [52, 30, 58]},
    ],
    ids=["timestamp-58.8", "times-like-coordinates", "iso-time", "clock-times", "allowed", "near-triple"],
)
def test_no_leak_is_reported_in_a_clean_document(document: dict[str, Any]) -> None:
    assert gps_leaks(document) == []


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"steps": {"exif": {"output": {"gps": {"latitude": 52.5163}}}}}, "steps.exif.output.gps"),
        ({"output": {"GPSInfo": "present"}}, "output.GPSInfo"),
        ({"output": {"latitude": 52.516333}}, "output.latitude"),
        ({"output": {"where": "52.52, 13.38"}}, "output.where"),
        ({"output": {"lon": -13.378}}, "output.lon"),
        ({"output": {"position": [52.0, 30.0, 58.8]}}, "output.position"),
        ({"output": {"position": "13 deg 22' 39.5\" E"}}, "output.position"),
    ],
    ids=["gps-key", "gps-key-case", "decimal", "rounded-in-text", "negative", "raw-triple", "raw-in-text"],
)
def test_every_form_of_the_position_is_found_with_its_path(document: dict[str, Any], where: str) -> None:
    leaks = gps_leaks(document)
    assert leaks, f"the position in {document} went unnoticed"
    assert leaks[0].startswith(f"{where} = "), leaks
