"""`python -m stack up/status/down` on the real emulators, with a test manifest of echo services."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore, pubsub_v1, storage

from fixtures.mock_tokens import mock_id_token
from imageflow import manifest as manifest_module
from stack import infra, localsecrets, processes, state
from stack.control import PASS_ENV, ControlError, StackControl
from stack.processes import MARKER_ENV

pytestmark = [
    # Each test boots `python -m stack up` of its own; echo_stack is one per module and
    # test_down_stops_every_process stops it, so the module also keeps its order.
    pytest.mark.private_stack("boots stacks of its own on real emulators, in file order"),
]

MANIFEST = """
[pipeline]
name = "stacktest"
upload_topic = "st-uploaded"
dead_letter_topic = "st-dead-letter"
max_delivery_attempts = 5

[services.dashboard]
module = "tests.stack.echo_app"
required_config = ["GOOGLE_CLOUD_PROJECT"]
required_secrets = ["SESSION_SECRET"]

[[agents]]
name = "echoer"
module = "{agent_module}"
triggers = ["st-uploaded"]
output_topic = "st-echoed"
depends_on = []
deadline_seconds = 15
outputs = []
"""


RULES = """rules_version = '2';
service cloud.firestore {{
  match /databases/{{database}}/documents {{
    match /{{document=**}} {{ allow read: if {allow}; }}
  }}
}}
"""


def survivors(marker: str) -> list[str]:
    """Processes started by the stack run that carries marker in its environment."""
    return processes.processes_with_env(MARKER_ENV, marker)


def stack_cli(
    args: list[str], state_path: Path, marker: str, manifest: Path | None = None, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m stack --state-file PATH ARGS` with a marker in its environment."""
    env = {
        **os.environ,
        MARKER_ENV: marker,
        PASS_ENV: MARKER_ENV,
        "IMAGEFLOW_SECRETS_FILE": str(state_path.parent / "secrets.env"),
    }
    env.pop(state.STATE_ENV, None)
    if manifest is not None:
        env["IMAGEFLOW_MANIFEST"] = str(manifest)
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "stack", "--state-file", str(state_path), *args],
        cwd=state.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def write_manifest(directory: Path, agent_module: str = "tests.stack.echo_app") -> Path:
    """A manifest with two echo services: the dashboard and one agent."""
    path = directory / "pipeline.toml"
    path.write_text(MANIFEST.format(agent_module=agent_module))
    return path


def test_preflight_names_what_to_install(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    result = stack_cli(
        ["up"],
        tmp_path / "stack.json",
        marker,
        IMAGEFLOW_FIRESTORE_EMULATOR=str(tmp_path / "missing-emulator"),
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "apt-get install -y google-cloud-cli-firestore-emulator" in lines[0]
    assert not (tmp_path / "stack.json").exists()
    assert survivors(marker) == []


def test_failed_up_stops_everything_it_started(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    manifest = write_manifest(tmp_path, agent_module="tests.stack.no_such_agent_module")
    result = stack_cli(["up", "--detach"], tmp_path / "stack.json", marker, manifest)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert "echoer" in result.stderr
    assert "tests.stack.no_such_agent_module does not exist yet" in result.stderr
    assert not (tmp_path / "stack.json").exists()
    assert survivors(marker) == []


@pytest.fixture(scope="module")
def echo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackControl, str]]:
    """A detached stack (real emulators, router) serving the test manifest's echo services."""
    directory = tmp_path_factory.mktemp("echo-stack")
    marker = uuid.uuid4().hex
    manifest = write_manifest(directory)
    state_path = directory / "stack.json"
    result = stack_cli(["up", "--detach"], state_path, marker, manifest)
    assert result.returncode == 0, result.stderr + result.stdout
    saved = {k: os.environ.get(k) for k in ("IMAGEFLOW_MANIFEST", "IMAGEFLOW_SECRETS_FILE")}
    os.environ["IMAGEFLOW_MANIFEST"] = str(manifest)
    try:
        yield StackControl(state_path, manifest_module.load(manifest)), marker
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if state_path.exists():
            stack_cli(["down"], state_path, marker)


def test_up_serves_every_manifest_service_and_status_is_healthy(echo_stack: tuple[StackControl, str]) -> None:
    control, marker = echo_stack
    current = control.state
    assert set(current.services) == {"dashboard", "echoer"}
    for name, service in current.services.items():
        answer = requests.get(service.url + "/echo", timeout=10).json()
        assert answer["revision"] == service.revision
        assert service.revision.startswith(f"{name}-00001-")
        assert service.revision_url.startswith("http://127.0.0.1:")
    # Secrets reach the service that requires them, but never the state file.
    secret = (Path(current.run_dir).parent.parent / "secrets.env").read_text()
    session_secret = next(
        line.split("=", 1)[1] for line in secret.splitlines() if line.startswith("SESSION_SECRET=")
    )
    assert session_secret not in control.state_path.read_text()
    result = stack_cli(["status"], control.state_path, marker)
    assert result.returncode == 0, result.stdout
    assert "UNHEALTHY" not in result.stdout
    assert "DOWN" not in result.stdout


@pytest.fixture
def echo_env(
    echo_stack: tuple[StackControl, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[StackControl, str]:
    """The echo stack, with the client environment pointed at it for this test only."""
    # Restored after the test: later tests in this process must not talk to a stopped stack.
    for key, value in echo_stack[0].env.items():
        monkeypatch.setenv(key, value)
    return echo_stack


def test_push_subscriptions_deliver_through_the_router(echo_env: tuple[StackControl, str]) -> None:
    control, _ = echo_env
    current = control.state
    subscriber = pubsub_v1.SubscriberClient()
    try:
        sub = subscriber.get_subscription(
            request={"subscription": subscriber.subscription_path(current.project, "st-uploaded--echoer")}
        )
        # The push carries the verification token of the stack's own secrets file (agents require it);
        # compared without showing it.
        stack_secrets = localsecrets.parse((Path(current.run_dir).parent.parent / "secrets.env").read_text())
        token = stack_secrets[localsecrets.PUSH_TOKEN_KEY]
        carries_token = sub.push_config.push_endpoint == infra.push_endpoint(
            current.services["echoer"].url, token
        )
        assert carries_token, "the push endpoint is not the echoer's URL with the stack's push token"
        assert sub.ack_deadline_seconds == 15
        assert sub.dead_letter_policy.dead_letter_topic.endswith("/topics/st-dead-letter")
        assert sub.dead_letter_policy.max_delivery_attempts == 5
        subscriber.get_subscription(
            request={"subscription": subscriber.subscription_path(current.project, "st-dead-letter--audit")}
        )
    finally:
        subscriber.close()
    # Idempotent: a second run finds everything.
    report = control.ensure_infrastructure()
    assert report.created == []
    # A verification lane's subscriptions carry the token too (pushes to a candidate's URL).
    lane = "lane-st--"
    candidate = current.services["echoer"].url
    control.ensure_infrastructure(prefix=lane, endpoints={"echoer": candidate})
    subscriber = pubsub_v1.SubscriberClient()
    try:
        lane_sub = subscriber.get_subscription(
            request={
                "subscription": subscriber.subscription_path(current.project, f"{lane}st-uploaded--echoer")
            }
        )
        carries_token = lane_sub.push_config.push_endpoint == infra.push_endpoint(candidate, token)
        assert carries_token, "the lane's push endpoint does not carry the stack's push token"
    finally:
        subscriber.close()
        control.delete_lane(lane)


def test_the_pubsub_log_never_holds_a_push_token(echo_env: tuple[StackControl, str]) -> None:
    control, _ = echo_env
    current = control.state
    token = "tk" + uuid.uuid4().hex
    topic, name = f"st-log-{uuid.uuid4().hex[:8]}", f"st-log-{uuid.uuid4().hex[:8]}--echoer"
    log = Path(current.run_dir) / "logs" / "pubsub.log"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic_path = publisher.topic_path(current.project, topic)
    subscription = subscriber.subscription_path(current.project, name)
    try:
        publisher.create_topic(request={"name": topic_path})
        endpoint = (
            f"{current.services['echoer'].url}/status/503?token={token}"  # answers 503: never acknowledged
        )
        subscriber.create_subscription(
            request={"name": subscription, "topic": topic_path, "push_config": {"push_endpoint": endpoint}}
        )
        publisher.publish(topic_path, b"{}").result(timeout=30)
        processes.wait_until(
            lambda: "status/503" in log.read_text(errors="replace"),
            "the Pub/Sub emulator logging the refused push",
            timeout=60,
        )
        text = log.read_text(errors="replace")
        assert token not in text, "the push token is in the Pub/Sub emulator's log"
        assert "/status/503?token=[redacted]" in text
    finally:
        with contextlib.suppress(exceptions.NotFound):
            subscriber.delete_subscription(request={"subscription": subscription})
        with contextlib.suppress(exceptions.NotFound):
            publisher.delete_topic(request={"topic": topic_path})
        subscriber.close()


def test_storage_emulator_round_trip(echo_env: tuple[StackControl, str]) -> None:
    control, _ = echo_env
    client = storage.Client(project=control.state.project, credentials=AnonymousCredentials())
    bucket = client.bucket(control.state.bucket)
    name = f"stack-test/{uuid.uuid4().hex}.bin"
    blob = bucket.blob(name)
    blob.upload_from_string(b"\x89PNG-bytes", content_type="image/png")
    assert bucket.blob(name).download_as_bytes() == b"\x89PNG-bytes"
    assert [b.name for b in client.list_blobs(bucket, prefix="stack-test/")] == [name]
    blob.delete()
    with pytest.raises(exceptions.NotFound):
        bucket.blob(name).download_as_bytes()
    # Nothing kept after a delete: a soft-deleted object would stay in the emulator's metadata,
    # which it rewrites whole on every write (each run slower than the last).
    assert client.get_bucket(control.state.bucket).soft_delete_policy.retention_duration_seconds == 0
    assert [b.name for b in client.list_blobs(bucket, prefix="stack-test/", soft_deleted=True)] == []


def test_firestore_export_clear_import_and_rules(echo_env: tuple[StackControl, str], tmp_path: Path) -> None:
    control, _ = echo_env
    db = firestore.Client(project=control.state.project)
    doc = db.collection("stack-test").document(uuid.uuid4().hex)
    doc.set({"kept": True})
    export = control.export_data(tmp_path / "export")
    assert export.name.endswith(".overall_export_metadata")
    control.clear_data()
    assert not doc.get().exists
    control.import_data(export)
    assert doc.get().to_dict() == {"kept": True}
    # Rules load at run time and apply to a client carrying a (mock, unsigned) Firebase ID token.
    firestore_host = control.state.emulators["firestore"]
    url = f"http://{firestore_host}/v1/projects/{control.state.project}/databases/(default)/documents/stack-test"
    user = {"Authorization": f"Bearer {mock_id_token('stack-test-user', control.state.project)}"}
    control.load_rules(RULES.format(allow="false"))
    assert requests.get(url, headers=user, timeout=10).status_code == 403
    control.load_rules(RULES.format(allow="request.auth != null"))
    assert requests.get(url, headers=user, timeout=10).status_code == 200
    with pytest.raises(ControlError, match="400"):
        control.load_rules("this is not a rules file")


def test_down_stops_every_process(echo_stack: tuple[StackControl, str]) -> None:
    control, marker = echo_stack
    assert survivors(marker), "the stack's processes should carry the marker before down"
    result = stack_cli(["down"], control.state_path, marker)
    assert result.returncode == 0, result.stderr
    assert not control.state_path.exists()
    assert survivors(marker) == []
    again = stack_cli(["down"], control.state_path, marker)
    assert again.returncode == 0
    assert "no running stack" in again.stdout


def test_foreground_up_stops_everything_on_sigterm(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    manifest = write_manifest(tmp_path)
    state_path = tmp_path / "stack.json"
    env = {
        **os.environ,
        MARKER_ENV: marker,
        PASS_ENV: MARKER_ENV,
        "IMAGEFLOW_SECRETS_FILE": str(tmp_path / "secrets.env"),
        "IMAGEFLOW_MANIFEST": str(manifest),
    }
    env.pop(state.STATE_ENV, None)
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "stack", "--state-file", str(state_path), "up"],
            cwd=state.REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        processes.wait_until(
            lambda: "running; Ctrl-C stops everything" in log.read_text() or up.poll() is not None,
            "foreground stack up",
            180,
        )
        assert up.poll() is None, log.read_text()
        assert processes.processes_with_env(MARKER_ENV, marker)
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=120) == 0, log.read_text()
    finally:
        if up.poll() is None:
            processes.stop_group(up.pid, popen=up)
    assert survivors(marker) == []
    assert not state_path.exists()
