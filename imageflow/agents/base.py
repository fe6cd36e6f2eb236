"""The shared Pub/Sub push handler of every agent: envelope checks, claim, work, record, publish.

Each delivery is answered on purpose (Pub/Sub redelivers anything but a 2xx):
  400  a malformed push that can never succeed (one-line reason)
  401  no push verification token, where the agent requires one (IMAGEFLOW_PUSH_TOKEN is set)
  403  a wrong push verification token
  413  a body over PUSH_BODY_LIMIT_BYTES, refused from its Content-Length or, chunked, as soon as
       the limit is passed: never read in full
  404  the workflow (or this agent's step in it) does not exist, or was deleted while the
       delivery worked on it
  200  done, a duplicate of done work, a closed workflow, a rejection or an agent failure
       (the failure is recorded in the workflow document, retrying would not help)
  503  ask for redelivery: another delivery holds the step, or a transient infrastructure error
       (the step is released first; a failed publish leaves the step done and unpublished, and
       the redelivery re-publishes without redoing the work)

Adding an agent = one module in imageflow/agents/ plus one [[agents]] entry in pipeline.toml:
the module defines NAME, a pure `process(...)` with the business logic, a `handle(job)` that
feeds it (download, upload) and returns the output summary, and
`create_app(settings=None) -> create_agent_app(NAME, handle, settings)`. The stack, the deploy
plan and the suite pick it up from the manifest.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import requests
from flask import Flask, Response, jsonify, request
from google.api_core import exceptions as google_exceptions
from google.auth import exceptions as google_auth_exceptions
from google.cloud import firestore
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from imageflow import clients, logs, test_failures, workflow
from imageflow.config import PUSH_TOKEN_PARAM, Settings, lane_or_empty
from imageflow.config import load as load_settings
from imageflow.faults import AgentFaults, unknown
from imageflow.manifest import AgentSpec, Manifest
from imageflow.manifest import default as default_manifest
from imageflow.workflow import Claim, StepStatus

log = logging.getLogger("imageflow.agents")

# Errors that say "the infrastructure is briefly unavailable", not "this image is bad".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    google_exceptions.ServiceUnavailable,
    google_exceptions.DeadlineExceeded,
    google_exceptions.TooManyRequests,
    google_exceptions.InternalServerError,
    google_exceptions.Aborted,
    google_exceptions.RetryError,
    google_auth_exceptions.TransportError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)
# Firestore document ids: no slash, bounded; anything else is not a workflow id we issued.
WORKFLOW_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MESSAGE_FIELDS = ("workflow_id", "owner", "bucket", "object")
# A Pub/Sub push of this pipeline is under 10 KB (a small JSON message, base64, in an envelope);
# 64 KiB leaves room for attributes and growth while a hostile body costs almost nothing to refuse.
PUSH_BODY_LIMIT_BYTES = 64 * 1024
# The app config key serve.py passes to the HTTP server as its own request body limit.
SERVER_BODY_LIMIT_KEY = "IMAGEFLOW_SERVER_BODY_LIMIT"


class EnvelopeError(ValueError):
    """The push request is not a usable Pub/Sub push (the message is the one-line reason)."""


class Rejected(Exception):
    """The image is bad input (only the validator raises this): the workflow ends rejected."""

    def __init__(self, reason: str, output: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.output = dict(output or {})


@dataclass(frozen=True)
class Delivery:
    """One push delivery, decoded from the envelope."""

    workflow_id: str
    message: dict[str, str]
    lane: str
    message_id: str
    attempt: int | None


@dataclass
class Job:
    """What an agent's handler works with: the delivery, its workflow document and the services."""

    delivery: Delivery
    document: dict[str, Any]
    settings: Settings
    spec: AgentSpec
    manifest: Manifest
    faults: AgentFaults
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def workflow_id(self) -> str:
        """The workflow this delivery is about."""
        return self.delivery.workflow_id

    @property
    def owner(self) -> str:
        """The uid owning the upload, from the server-written document."""
        return str(self.document.get("owner") or self.delivery.message.get("owner", ""))

    @property
    def source(self) -> tuple[str, str]:
        """(bucket, object) of the original: the document is the authority, the message the fallback."""
        image = self.document.get("image") or {}
        bucket = image.get("bucket") or self.delivery.message.get("bucket") or self.settings.bucket
        name = image.get("object") or self.delivery.message.get("object")
        if not name:
            raise ValueError("the workflow names no original image object")
        return str(bucket), str(name)

    def original_size(self) -> int | None:
        """Size in bytes of the original in storage (None when it has none recorded)."""
        bucket, name = self.source
        blob = clients.storage_client(self.settings.project).bucket(bucket).get_blob(name)
        if blob is None:
            raise FileNotFoundError(f"original gs://{bucket}/{name} does not exist")
        return int(blob.size) if blob.size is not None else None

    def original(self) -> bytes:
        """The original image bytes from storage."""
        bucket, name = self.source
        blob = clients.storage_client(self.settings.project).bucket(bucket).blob(name)
        try:
            return bytes(blob.download_as_bytes())
        except google_exceptions.NotFound as exc:
            raise FileNotFoundError(f"original gs://{bucket}/{name} does not exist") from exc

    def write(self, name: str, data: bytes, content_type: str) -> None:
        """Write an object to the service's bucket."""
        blob = clients.storage_client(self.settings.project).bucket(self.settings.bucket).blob(name)
        blob.upload_from_string(data, content_type=content_type)

    def fault(self, name: str) -> bool:
        """True when this agent's fault switch `name` is on."""
        return self.faults.on(name)


Handler = Callable[[Job], Mapping[str, Any]]
# What an agent records under the fake_done fault: a plausible output without doing the work.
FakeOutput = Callable[[Job], Mapping[str, Any]]


def placeholder_output(job: Job) -> dict[str, Any]:
    """A fake output naming every manifest output key, for agents without a better fake."""
    return {key: None for key in job.spec.outputs}


def parse_envelope(body: object) -> Delivery:
    """Decode a Pub/Sub push envelope step by step; raises EnvelopeError naming the first problem."""
    if not isinstance(body, dict):
        raise EnvelopeError("request body is not a JSON object")
    message = body.get("message")
    if not isinstance(message, dict):
        raise EnvelopeError("no Pub/Sub message in the envelope")
    data = message.get("data")
    if not isinstance(data, str) or not data:
        raise EnvelopeError("the Pub/Sub message has no data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError("message data is not base64") from exc
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError("message data is not JSON") from exc
    if not isinstance(payload, dict):
        raise EnvelopeError("message data is not a JSON object")
    workflow_id = payload.get("workflow_id")
    if not isinstance(workflow_id, str) or not workflow_id:
        raise EnvelopeError("message data has no workflow_id")
    if not WORKFLOW_ID_PATTERN.fullmatch(workflow_id):
        raise EnvelopeError("workflow_id is not a valid workflow id")
    attributes = message.get("attributes")
    attributes = attributes if isinstance(attributes, dict) else {}
    lane_value = attributes.get("lane")
    attempt = body.get("deliveryAttempt")
    message_id = message.get("messageId") or message.get("message_id") or ""
    return Delivery(
        workflow_id=workflow_id,
        message={k: str(payload[k]) for k in MESSAGE_FIELDS if isinstance(payload.get(k), str)},
        lane=lane_or_empty(lane_value if isinstance(lane_value, str) else None),
        message_id=str(message_id),
        attempt=attempt if isinstance(attempt, int) else None,
    )


def envelope(payload: Mapping[str, Any], attributes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A push envelope as Pub/Sub sends it (for tests and local tools)."""
    data = base64.b64encode(json.dumps(dict(payload)).encode()).decode()
    return {
        "message": {"data": data, "attributes": dict(attributes or {}), "messageId": "local"},
        "subscription": "projects/local/subscriptions/local",
    }


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


@dataclass(frozen=True)
class Outcome:
    """How a delivery ended: HTTP status, a short outcome word, and extra JSON fields."""

    status: int
    outcome: str
    detail: dict[str, Any] = field(default_factory=dict)


def push_refusal(settings: Settings, content_length: int | None, token: str | None) -> Outcome | None:
    """Why a push is refused before its body is read (size, then token), or None to go on."""
    if content_length is not None and content_length > PUSH_BODY_LIMIT_BYTES:
        return too_large()
    if not settings.push_token:
        return None
    if not token:
        return Outcome(401, "unauthenticated", {"error": "push verification token required"})
    if not hmac.compare_digest(token.encode(), settings.push_token.encode()):
        return Outcome(403, "forbidden", {"error": "wrong push verification token"})
    return None


def _push_body() -> object:
    """The push's JSON body (None when it is not JSON), never reading more than the limit and a byte.

    A Content-Length was checked before; a streamed (chunked) body has none, and werkzeug's own
    limit cannot tell a body of exactly the limit from a longer one, so it is read here, bounded.
    """
    if not request.is_json:
        return None
    stream = request.environ.get("wsgi.input")
    if request.content_length is None and request.environ.get("wsgi.input_terminated") and stream:
        data = b""
        while len(data) <= PUSH_BODY_LIMIT_BYTES:
            chunk = stream.read(PUSH_BODY_LIMIT_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > PUSH_BODY_LIMIT_BYTES:
            raise RequestEntityTooLarge()
    else:
        data = request.get_data()
    try:
        return json.loads(data)
    except ValueError:
        return None


def too_large() -> Outcome:
    """The answer to a push body over the limit."""
    return Outcome(413, "too-large", {"error": f"push body over {PUSH_BODY_LIMIT_BYTES} bytes"})


class Agent:
    """One agent's delivery logic, independent of Flask so it can be exercised directly."""

    def __init__(
        self,
        spec: AgentSpec,
        manifest: Manifest,
        settings: Settings,
        handler: Handler,
        fake: FakeOutput = placeholder_output,
    ) -> None:
        self.spec = spec
        self.manifest = manifest
        self.settings = settings
        self.handler = handler
        self.fake = fake
        self.faults = AgentFaults(settings, spec.name)
        self.lease = timedelta(seconds=spec.deadline_seconds)

    @property
    def name(self) -> str:
        """The agent's manifest name."""
        return self.spec.name

    def db(self) -> firestore.Client:
        """The server-side Firestore client."""
        return clients.firestore_client(self.settings.project)

    def publish(self, job: Job) -> None:
        """Publish the output message to the agent's output topic (in the delivery's lane)."""
        message = dict(job.delivery.message)
        message["workflow_id"] = job.workflow_id
        if job.owner:
            message.setdefault("owner", job.owner)
        attributes = {"workflow_id": job.workflow_id}
        if job.delivery.lane:
            attributes["lane"] = job.delivery.lane
        topic = self.settings.topic(self.spec.output_topic, job.delivery.lane)
        clients.publish(self.settings.project, topic, json.dumps(message).encode(), **attributes)

    def planned(self, job: Job) -> test_failures.Mode | None:
        """The test failure planned for this agent on the job's owner (only when the setting is on)."""
        if not self.settings.test_failures:
            return None
        if "test_failure" not in job.notes:
            # One read per delivery, never cached across deliveries: each test writes its own plan.
            job.notes["test_failure"] = test_failures.agent_mode(self.db(), job.owner, self.name)
        mode: test_failures.Mode | None = job.notes["test_failure"]
        return mode

    def _step_count(self, job: Job, key: str) -> int:
        """A counter of this agent's step as read when the delivery was claimed (before its own)."""
        step = (job.document.get("steps") or {}).get(self.name) or {}
        value = step.get(key, 0)
        return value if isinstance(value, int) else 0

    def publish_and_mark(self, job: Job) -> Outcome | None:
        """Publish (the caller holds the publish lease), then record it; an Outcome (503) on failure."""
        try:
            mode = self.planned(job)
            if mode and mode.kind == "publish_fails" and self._step_count(job, "deliveries") < mode.count:
                raise test_failures.InjectedTransientError(f"planned publish failure of {self.name}")
            self.publish(job)
            if self.faults.on("twice"):
                self.publish(job)
            workflow.mark_published(self.db(), job.workflow_id, self.name)
        except Exception as exc:  # any publish failure is worth a redelivery
            error = type(exc).__name__
            log.warning("publish failed workflow=%s agent=%s error=%s", job.workflow_id, self.name, error)
            workflow.release_publish(self.db(), job.workflow_id, self.name)
            return Outcome(503, "publish-failed", {"error": f"publish failed: {error}"})
        return None

    def republish(self, job: Job) -> Outcome:
        """A done step whose message never left: publish it unless another delivery is doing so."""
        if not workflow.claim_publish(self.db(), job.workflow_id, self.name, self.lease):
            return Outcome(200, "duplicate")
        return self.publish_and_mark(job) or Outcome(200, "republished")

    def exists(self, workflow_id: str) -> bool:
        """True when the workflow document is there (a delivery may outlive its deletion)."""
        return workflow_id != "-" and workflow.workflow_ref(self.db(), workflow_id).get().exists

    def new_job(self, delivery: Delivery, document: dict[str, Any]) -> Job:
        """The job handed to the handler."""
        return Job(delivery, document, self.settings, self.spec, self.manifest, self.faults)

    def deliver(self, delivery: Delivery) -> Outcome:
        """Claim the step, do the work, record it and publish: the whole life of one delivery."""
        revision = self.settings.revision
        result = workflow.claim(self.db(), delivery.workflow_id, self.name, revision, self.lease)
        if result.claim == Claim.UNKNOWN:
            return Outcome(404, "unknown-workflow", {"error": "no such workflow or no step for this agent"})
        if result.claim == Claim.BUSY:
            return Outcome(503, "busy", {"error": "another delivery is working on this step"})
        document = result.document or {}
        job = self.new_job(delivery, document)
        if result.claim == Claim.CLOSED:
            return Outcome(200, "closed")
        if result.claim == Claim.ALREADY_DONE:
            step = (document.get("steps") or {}).get(self.name) or {}
            ended_badly = document.get("status") in (workflow.Status.FAILED, workflow.Status.REJECTED)
            if step.get("status") == StepStatus.DONE and not step.get("published") and not ended_badly:
                # The work was recorded but its message never left: finish the job, do not redo it.
                return self.republish(job)
            return Outcome(200, "duplicate")
        return self.run(job)

    def work(self, job: Job) -> Mapping[str, Any]:
        """Run the handler, with the generic faults and the owner's test failure plan applied around it."""
        mode = self.planned(job)
        if mode and mode.kind == "error":
            raise test_failures.InjectedFailure(f"planned failure of {self.name}")
        if mode and (
            mode.kind == "always_5xx"
            or (mode.kind == "transient" and self._step_count(job, "attempts") < mode.count)
        ):
            raise test_failures.InjectedTransientError(f"planned transient error of {self.name}")
        if self.faults.on("slow"):
            self.faults.block_past(self.spec.deadline_seconds)
        if self.faults.on("errors"):
            raise RuntimeError(f"fault {self.name}.errors switched on")
        if self.faults.on("fake_done"):
            return self.fake(job)
        output = self.handler(job)
        if self.faults.on("twice"):
            output = self.handler(job)
            workflow.count_attempt(self.db(), job.workflow_id, self.name)
        if self.faults.on("wrong_output"):
            return {}
        return output

    def deliveries_seen(self, job: Job) -> int:
        """How many times this message was delivered, this delivery included (Pub/Sub's count if sent)."""
        counted = self._step_count(job, "deliveries") + 1
        return max(job.delivery.attempt or 0, counted)

    def run(self, job: Job) -> Outcome:
        """Do the claimed work and record how it went."""
        db = self.db()
        revision = self.settings.revision
        try:
            output = self.work(job)
        except Rejected as rejection:
            others = [name for name in (job.document.get("steps") or {}) if name != self.name]
            workflow.reject(
                db, job.workflow_id, self.name, revision, rejection.reason, others, rejection.output
            )
            return Outcome(200, "rejected", {"reason": rejection.reason})
        except Exception as exc:  # an agent error is recorded, never raised to Pub/Sub
            if _is_transient(exc):
                seen = self.deliveries_seen(job)
                if seen >= self.manifest.max_delivery_attempts:
                    # Pub/Sub dead-letters this message after this answer: the workflow must not
                    # stay processing for ever, so the step fails; the 503 still dead-letters it.
                    error = f"gave up after {seen} deliveries: transient error {type(exc).__name__}"
                    log.warning("gave up workflow=%s agent=%s after=%d", job.workflow_id, self.name, seen)
                    workflow.fail_step(db, job.workflow_id, self.name, revision, error)
                    return Outcome(503, "gave-up", {"error": error})
                workflow.release(db, job.workflow_id, self.name, revision, f"transient: {type(exc).__name__}")
                return Outcome(503, "released", {"error": f"transient error: {type(exc).__name__}"})
            error = _describe(exc)
            # The log names the error type only: messages can carry object names (user filenames).
            kind = type(exc).__name__
            log.warning("agent error workflow=%s agent=%s error=%s", job.workflow_id, self.name, kind)
            workflow.fail_step(db, job.workflow_id, self.name, revision, error)
            return Outcome(200, "failed", {"error": error})
        workflow.complete_step(db, job.workflow_id, self.name, revision, output, publish_lease=self.lease)
        return self.publish_and_mark(job) or Outcome(200, "done")


def _describe(exc: BaseException) -> str:
    """A one-line error for the workflow document (type and message, no traceback)."""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _json(status: int, body: Mapping[str, Any]) -> tuple[Response, int]:
    return jsonify(dict(body)), status


def _log_to_stderr(settings: Settings, spec: AgentSpec) -> None:
    """Make the per-delivery lines visible, as JSON, in a service process that configured no logging."""
    secrets = [settings.values.get(key, "") for key in spec.required_secrets] + [settings.push_token]
    logs.configure({"service": spec.name, "agent": spec.name, "revision": settings.revision}, secrets)


def create_agent_app(
    name: str,
    handler: Handler,
    settings: Settings | None = None,
    *,
    fake: FakeOutput = placeholder_output,
    agent_class: type[Agent] = Agent,
    manifest: Manifest | None = None,
) -> Flask:
    """The Flask app of one agent: POST / (push endpoint), /healthz and /readyz."""
    chosen_manifest = manifest or default_manifest()
    spec = chosen_manifest.agent(name)
    chosen = settings or load_settings(spec)
    agent = agent_class(spec, chosen_manifest, chosen, handler, fake)
    _log_to_stderr(chosen, spec)
    strange = unknown(chosen.faults, chosen_manifest.agent_names)
    if strange:
        log.warning("unknown fault switches ignored: %s", ", ".join(strange))
    if agent.faults.active:
        log.warning("agent %s runs with fault switches: %s", name, ", ".join(agent.faults.active))

    app = Flask(f"imageflow.agents.{name}")
    app.config["AGENT"] = agent
    logs.install(app, chosen.project, service=name, agent=name, revision=chosen.revision)
    # werkzeug enforces it on Content-Length and while reading a chunked body; serve.py also
    # gives the HTTP server its own limit, so an oversized body is not even buffered.
    app.config["MAX_CONTENT_LENGTH"] = PUSH_BODY_LIMIT_BYTES
    app.config[SERVER_BODY_LIMIT_KEY] = PUSH_BODY_LIMIT_BYTES

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return _json(200, {"ok": True})

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        report = chosen.readiness()
        return _json(200 if chosen.ready else 503, report)

    @app.post("/")
    def push() -> tuple[Response, int]:
        started = time.monotonic()
        workflow_id = "-"
        outcome = Outcome(500, "error", {"error": "internal error"})
        try:
            refusal = push_refusal(chosen, request.content_length, request.args.get(PUSH_TOKEN_PARAM))
            if refusal is not None:
                outcome = refusal
                return _json(outcome.status, {"outcome": outcome.outcome, **outcome.detail})
            if agent.faults.on("never_fires"):
                outcome = Outcome(200, "ignored")
                return _json(outcome.status, {"outcome": outcome.outcome})
            if not chosen.ready:
                missing = ", ".join(chosen.missing)
                outcome = Outcome(503, "not-ready", {"error": f"missing required settings: {missing}"})
            else:
                try:
                    delivery = parse_envelope(_push_body())
                except RequestEntityTooLarge:
                    outcome = too_large()
                except EnvelopeError as exc:
                    outcome = Outcome(400, "bad-request", {"error": str(exc)})
                else:
                    workflow_id = delivery.workflow_id
                    logs.bind(workflow_id=workflow_id)  # the request's teardown unbinds it
                    outcome = agent.deliver(delivery)
        except google_exceptions.NotFound as exc:
            if agent.exists(workflow_id):
                log.exception("delivery error workflow=%s agent=%s", workflow_id, name)
                outcome = Outcome(500, "error", {"error": f"{type(exc).__name__}"})
            else:
                # Its owner deleted the workflow mid-delivery: as unknown as one that never was.
                outcome = Outcome(404, "unknown-workflow", {"error": "the workflow was deleted meanwhile"})
        except Exception as exc:
            # Firestore itself failing around the work (claim, record): ask for a redelivery.
            status = 503 if _is_transient(exc) else 500
            log.exception("delivery error workflow=%s agent=%s", workflow_id, name)
            outcome = Outcome(status, "error", {"error": f"{type(exc).__name__}"})
        finally:
            elapsed_ms = (time.monotonic() - started) * 1000
            log.info(
                "delivery workflow=%s agent=%s outcome=%s status=%d ms=%.0f",
                workflow_id,
                name,
                outcome.outcome,
                outcome.status,
                elapsed_ms,
            )
        return _json(outcome.status, {"outcome": outcome.outcome, **outcome.detail})

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return _json(exc.code or 500, {"error": exc.name})

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error in agent %s", name)
        return _json(500, {"error": "internal error"})

    return app
