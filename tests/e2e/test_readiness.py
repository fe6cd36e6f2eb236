"""Every service of the manifest is ready on the target, with all the configuration it requires."""

from __future__ import annotations

import allure
import pytest
import requests

from fixtures.reporting import labels
from fixtures.scrubber import registered_secrets
from fixtures.target import Target
from imageflow.manifest import default as default_manifest

pytestmark = pytest.mark.smoke
Severity = allure.severity_level
HTTP_TIMEOUT_SECONDS = 10
SERVICES = [service.name for service in default_manifest().services]


def _service_url(target: Target, service: str) -> str:
    url = target.service_urls.get(service, "")
    if not url:
        pytest.fail(
            f"no URL known for service {service} on target {target.name}: "
            "the deploy tool passes them in IMAGEFLOW_SERVICE_URLS",
            pytrace=False,
        )
    return url.rstrip("/")


@pytest.mark.parametrize("service", SERVICES)
@labels("Deployment", "Readiness", Severity.BLOCKER)
def test_service_is_ready_with_every_required_setting(target: Target, service: str) -> None:
    """GET /readyz is 200 and names every required key of the manifest as present, none missing."""
    spec = default_manifest().dashboard if service == "dashboard" else default_manifest().agent(service)
    url = _service_url(target, service)
    with allure.step(f"GET {url}/readyz"):
        response = requests.get(f"{url}/readyz", timeout=HTTP_TIMEOUT_SECONDS)
    report = response.json()
    assert response.status_code == 200, f"{service} is not ready: {report.get('message', report)}"
    assert report["ready"] is True
    assert report["service"] == service
    assert report["missing"] == []
    assert sorted(set(spec.required_keys) - set(report["present"])) == []
    expected = target.expected_revisions.get(service)
    if expected:
        assert report["revision"] == expected


@pytest.mark.parametrize("service", SERVICES)
@labels("Deployment", "Readiness", Severity.CRITICAL)
def test_service_health_and_readiness_never_show_a_secret_value(target: Target, service: str) -> None:
    """/healthz is 200 {"ok": true}; neither answer carries the value of a secret of this run."""
    url = _service_url(target, service)
    health = requests.get(f"{url}/healthz", timeout=HTTP_TIMEOUT_SECONDS)
    assert (health.status_code, health.json()) == (200, {"ok": True})
    readiness = requests.get(f"{url}/readyz", timeout=HTTP_TIMEOUT_SECONDS)
    shown = [label for value, label in registered_secrets().items() if value in readiness.text + health.text]
    assert shown == []
