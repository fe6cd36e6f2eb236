"""The canary's traffic on Google Cloud: Cloud Run traffic by tag, Cloud Monitoring per revision, workflows.

Shares move with `gcloud run services update-traffic SERVICE --to-tags=TAG=N`: Cloud Run gives the
rest to the revisions already serving, in their proportions, and a describe checks the split. A push
subscription's deliveries follow the service's split, so an agent's candidate gets its share of
messages.

Cloud Monitoring is read over its REST API (projects.timeSeries.list: `run.googleapis.com/
request_count` by revision and response class, `request_latencies` by revision) with the deployer's
gcloud access token, not through google-cloud-monitoring: the same API without a new dependency and
its gRPC stack, and the fake cloud of the deploy tests serves it on loopback as it serves the Rules
API. The business outcome comes from the workflow documents over Firestore's REST API (runQuery).
Cloud Monitoring publishes a revision's figures a minute or two late: the targets' windows are
minutes long for that reason.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from deploy.analysis import Request
from deploy.canary import Mark, Requests, Steps, steps_by_revision
from deploy.cloud_run import CloudRunCommands, traffic_split
from deploy.steps import StepFailed
from imageflow.dashboard.firestore_values import decode_fields
from imageflow.workflow import COLLECTION

HTTP_TIMEOUT = 30.0
# An access token lives an hour: taken again after this long.
TOKEN_SECONDS = 1800.0
# Cloud Monitoring's smallest alignment period.
MIN_ALIGNMENT_SECONDS = 60


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def distribution_values(distribution: dict[str, Any]) -> list[float]:
    """A latency distribution as values: each bucket's count times its geometric midpoint (ms)."""
    options = distribution.get("bucketOptions", {})
    counts = [int(c) for c in distribution.get("bucketCounts", [])]
    if "exponentialBuckets" in options:
        spec = options["exponentialBuckets"]
        scale, growth = float(spec["scale"]), float(spec["growthFactor"])
        bounds = [scale * growth**i for i in range(int(spec["numFiniteBuckets"]) + 1)]
    elif "explicitBuckets" in options:
        bounds = [float(b) for b in options["explicitBuckets"]["bounds"]]
    else:
        mean = float(distribution.get("mean", 0.0))
        return [mean] * int(distribution.get("count", 0))
    values: list[float] = []
    for index, count in enumerate(counts):
        # Bucket 0 is below the first bound, the last above the last bound (Cloud Monitoring's layout).
        low = bounds[index - 1] if 0 < index <= len(bounds) else (bounds[0] / 2 if index == 0 else bounds[-1])
        high = bounds[index] if index < len(bounds) else bounds[-1] * 2
        values += [math.sqrt(max(low, 1e-9) * high)] * count
    return values


class GcpTraffic:
    """Moves every service's share to the candidate's tag and reads its figures from Google Cloud."""

    def __init__(
        self,
        executor: CloudRunCommands,
        candidate: dict[str, str],
        before: dict[str, dict[str, int]],
    ) -> None:
        self.x = executor
        self.candidate = candidate
        # Each service's split before the candidates: where the traffic goes back to.
        self.before = before
        self._token = ""
        self._token_at = 0.0
        self.restored = True

    def shift(self, percent: int) -> None:
        """The candidate's tag gets `percent` of every service; a describe checks every split."""
        self.restored = False
        for service in reversed(list(self.candidate)):
            name = self.x.env.service_name(service)
            self.x.shell.run(
                self.x.run_cmd("services", "update-traffic", name, f"--to-tags={self.x.ctx.tag}={percent}")
            )
        for service, revision in self.candidate.items():
            split = traffic_split(self.x.describe(service) or {})
            if not self.x.shell.dry_run and split.get(revision, 0) != percent:
                raise StepFailed(
                    f"{self.x.env.service_name(service)} gives {revision} {split}, not {percent}%"
                )

    def restore(self) -> None:
        """Every service's traffic back to the split it had before the candidates (once)."""
        if self.restored:
            return
        self.restored = True
        for service in self.candidate:
            split = ",".join(f"{r}={p}" for r, p in self.before[service].items())
            name = self.x.env.service_name(service)
            self.x.shell.run(self.x.run_cmd("services", "update-traffic", name, f"--to-revisions={split}"))

    def mark(self) -> Mark:
        """Windows on Google Cloud are by time."""
        return Mark(0, datetime.now(UTC))

    def mark_before(self, seconds: float) -> Mark | None:
        """The users' traffic ran before the canary: Cloud Monitoring and Firestore hold that window."""
        return Mark(0, datetime.now(UTC) - timedelta(seconds=seconds))

    def token(self) -> str:
        """The deployer's access token (masked in every output), taken again every half hour."""
        if not self._token or time.monotonic() - self._token_at > TOKEN_SECONDS:
            self._token = self.x.shell.run(self.x.gcloud("auth", "print-access-token")).stdout.strip()
            self.x.shell.register_secret(self._token, "the deployer's access token")
            self._token_at = time.monotonic()
        return self._token

    def _call(self, what: str, method: str, url: str, **kwargs: Any) -> Any:  # noqa: ANN401 - JSON
        """One authorised call to a Google API; StepFailed names the API when it does not answer 200."""
        try:
            answer = requests.request(
                method,
                url,
                headers={"Authorization": f"Bearer {self.token()}"},
                timeout=HTTP_TIMEOUT,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise StepFailed(f"{what} did not answer: {type(exc).__name__}") from exc
        if answer.status_code != 200:
            raise StepFailed(f"{what} answered {answer.status_code}")
        return answer.json()

    def _series(self, service: str, metric: str, since: Mark) -> list[dict[str, Any]]:
        """One metric's time series of one service since the mark, summed per revision and response class."""
        now = datetime.now(UTC)
        seconds = max(MIN_ALIGNMENT_SECONDS, math.ceil((now - since.at).total_seconds()))
        params = [
            (
                "filter",
                f'metric.type="run.googleapis.com/{metric}" AND resource.type="cloud_run_revision" '
                f'AND resource.labels.service_name="{self.x.env.service_name(service)}"',
            ),
            ("interval.startTime", _rfc3339(since.at)),
            ("interval.endTime", _rfc3339(now)),
            ("aggregation.alignmentPeriod", f"{seconds}s"),
            ("aggregation.perSeriesAligner", "ALIGN_DELTA"),
            ("aggregation.crossSeriesReducer", "REDUCE_SUM"),
            ("aggregation.groupByFields", "resource.label.revision_name"),
            ("aggregation.groupByFields", "metric.label.response_code_class"),
        ]
        url = f"{self.x.ctx.sources.monitoring_api}/projects/{self.x.env.project}/timeSeries"
        data = self._call("Cloud Monitoring (timeSeries.list)", "GET", url, params=params)
        return list(data.get("timeSeries", [])) if isinstance(data, dict) else []

    def requests(self, since: Mark) -> Requests:
        """Per service and revision: one failed request per 5xx counted, latencies of the rest."""
        result: Requests = {}
        for service in self.candidate:
            by_revision: dict[str, list[Request]] = {}
            for series in self._series(service, "request_count", since):
                revision = series.get("resource", {}).get("labels", {}).get("revision_name", "")
                status_class = series.get("metric", {}).get("labels", {}).get("response_code_class", "")
                if status_class == "5xx":
                    count = sum(
                        int(p.get("value", {}).get("int64Value", 0)) for p in series.get("points", [])
                    )
                    by_revision.setdefault(revision, []).extend([Request(500, 0.0)] * count)
            for series in self._series(service, "request_latencies", since):
                revision = series.get("resource", {}).get("labels", {}).get("revision_name", "")
                if series.get("metric", {}).get("labels", {}).get("response_code_class") == "5xx":
                    continue
                for point in series.get("points", []):
                    values = distribution_values(point.get("value", {}).get("distributionValue", {}))
                    by_revision.setdefault(revision, []).extend(Request(200, v) for v in values)
            result[service] = by_revision
        return result

    def steps(self, since: Mark) -> Steps:
        """Each agent's steps per revision, from the workflows created since the mark (Firestore runQuery)."""
        database = f"projects/{self.x.env.project}/databases/(default)"
        url = f"{self.x.ctx.sources.firestore_api}/{database}/documents:runQuery"
        query = {
            "structuredQuery": {
                "from": [{"collectionId": COLLECTION}],
                "where": {
                    "fieldFilter": {
                        "field": {"fieldPath": "created_at"},
                        "op": "GREATER_THAN_OR_EQUAL",
                        "value": {"timestampValue": _rfc3339(since.at)},
                    }
                },
            }
        }
        rows = self._call("Firestore (the workflows query)", "POST", url, json=query)
        documents = [decode_fields(row["document"].get("fields", {})) for row in rows if row.get("document")]
        return steps_by_revision(documents, list(self.x.manifest.agent_names))
