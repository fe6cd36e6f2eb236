"""The Cloud Logging read of fixtures.service_logs through the real gcloud parser, with no credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_real_parsers import classify, real_tool, run_bounded, tool_env

from fixtures import service_logs


def test_the_cloud_log_read_is_accepted_by_the_real_gcloud(tmp_path: Path) -> None:
    """The command a failed test on Google Cloud runs stops at authentication, not at parsing."""
    path = real_tool("gcloud")
    if path is None:
        pytest.skip("the real gcloud is not installed (Google Cloud CLI)")
    argv = service_logs.read_command("imageflow-staging", ["wf-1", 'wf-"2'])
    outcome = classify("gcloud", *run_bounded([str(path), *argv[1:]], tool_env(tmp_path)))
    assert outcome.verdict == "parsed", outcome
    assert outcome.line.startswith("ERROR: (gcloud.logging.read)")
