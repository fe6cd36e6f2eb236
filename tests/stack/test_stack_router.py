"""The revision router: requests forwarded unchanged, atomic switches, zero dropped requests."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from stack import processes, runner, state
from stack.control import ControlError, RevisionFailed, StackControl

ECHO_COMMAND = (sys.executable, str(Path(__file__).with_name("echo_app.py")))
REPORT = state.REPO_ROOT / "reports" / "revision-switch.json"


def deploy_echo(control: StackControl, **kwargs: object) -> state.RevisionRecord:
    """A new echo revision (routed unless route=False)."""
    return control.deploy_revision("echo", command=ECHO_COMMAND, **kwargs)  # type: ignore[arg-type]


def _get(sock: socket.socket, path: str) -> bytes:
    """One keep-alive GET on an open socket; the head and body of its answer."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return answer


@pytest.mark.parametrize("router_stack", [["--idle-seconds", "1"]], indirect=True)
def test_an_idle_client_connection_is_closed(router_stack: StackControl) -> None:
    """A keep-alive connection left idle is closed by the router, so abandoned ones hold nothing."""
    deploy_echo(router_stack)
    port = router_stack.service("echo").port
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        assert b" 200 " in _get(sock, "/echo").split(b"\r\n")[0]
        assert b" 200 " in _get(sock, "/echo").split(b"\r\n")[0], "the connection is kept between requests"
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
        assert closed, "the router kept an idle connection open for 20 s (idle limit 1 s)"


def test_a_body_is_forwarded_while_a_thousand_connections_are_open(router_stack: StackControl) -> None:
    """With descriptors above select()'s limit of 1024 in the router, a POST body still gets through."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if hard != resource.RLIM_INFINITY and hard < wanted + 100:
        pytest.skip(f"the open-files limit ({hard}) is too low to open {wanted} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted + 100), hard))
    revision = deploy_echo(router_stack)
    port = router_stack.service("echo").port
    idle = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(1050)]
    try:
        # Answered on the last one: the router has accepted all of them (it accepts in order).
        assert b" 200 " in _get(idle[-1], "/echo").split(b"\r\n")[0]
        body = b"payload" * 1000
        response = requests.post(router_stack.service("echo").url + "/echo", data=body, timeout=20)
        assert response.status_code == 200, response.text[:200]
        assert (response.json()["body"].encode("latin-1"), response.json()["revision"]) == (body, revision.id)
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_no_live_revision_answers_503(router_stack: StackControl) -> None:
    url = router_stack.service("echo").url
    response = requests.get(url + "/echo", timeout=5)
    assert response.status_code == 503
    assert "no live revision" in response.text


def test_forwards_method_path_query_headers_and_body(router_stack: StackControl) -> None:
    revision = deploy_echo(router_stack)
    url = router_stack.service("echo").url
    body = b"\x00binary\xffpayload" * 100
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = requests.request(
            method,
            url + "/echo/a/b%20c?x=1&y=%2F&x=2",
            data=body,
            headers={
                "X-Custom": "value-1",
                "Authorization": "Bearer t0ken",
                "Content-Type": "application/x-test",
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        echoed = response.json()
        assert echoed["method"] == method
        assert echoed["path"] == "/echo/a/b c"
        assert echoed["query"] == "x=1&y=%2F&x=2"
        assert echoed["headers"]["X-Custom"] == "value-1"
        assert echoed["headers"]["Authorization"] == "Bearer t0ken"
        assert echoed["headers"]["Content-Type"] == "application/x-test"
        assert echoed["body"].encode("latin-1") == body
        assert echoed["revision"] == revision.id
        assert response.headers["X-Echo-Revision"] == revision.id
    # The Host header is the router's (as Cloud Run forwards the service URL), so redirects stay on it.
    assert echoed["headers"]["Host"] == url.removeprefix("http://")


def test_chunked_request_body_is_forwarded(router_stack: StackControl) -> None:
    deploy_echo(router_stack)
    url = router_stack.service("echo").url
    response = requests.post(url + "/echo", data=iter([b"part-1;", b"part-2"]), timeout=10)
    assert response.status_code == 200
    assert response.json()["body"] == "part-1;part-2"


def test_redirects_and_cookies_are_passed_through_not_followed(router_stack: StackControl) -> None:
    deploy_echo(router_stack)
    url = router_stack.service("echo").url
    response = requests.get(url + "/redirect", allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert response.headers["Location"] == "/target?from=redirect"
    set_cookies = response.raw.headers.getlist("Set-Cookie")
    assert len(set_cookies) == 2
    assert any(c.startswith("session=abc") and "HttpOnly" in c for c in set_cookies)
    assert any(c.startswith("theme=dark") for c in set_cookies)
    echoed = requests.get(url + "/echo", cookies={"session": "abc"}, timeout=10).json()
    assert echoed["cookies"] == {"session": "abc"}
    assert requests.get(url + "/status/404", timeout=10).status_code == 404
    head = requests.head(url + "/echo", timeout=10)
    assert head.status_code == 200
    assert head.content == b""


def test_route_switches_new_requests_and_keeps_old_revision_until_stopped(router_stack: StackControl) -> None:
    first = deploy_echo(router_stack)
    second = deploy_echo(router_stack, route=False, tag="candidate")
    url = router_stack.service("echo").url
    assert requests.get(url + "/echo", timeout=5).json()["revision"] == first.id
    # The candidate answers only on its own (tagged) URL.
    assert requests.get(second.url + "/echo", timeout=5).json()["revision"] == second.id
    router_stack.route("echo", second.id)
    assert requests.get(url + "/echo", timeout=5).json()["revision"] == second.id
    assert router_stack.live_revision("echo").id == second.id  # type: ignore[union-attr]
    with pytest.raises(ControlError, match="is live"):
        router_stack.stop_revision("echo", second.id)
    # Rolling back is routing to the previous revision, still running.
    router_stack.route("echo", first.id)
    assert requests.get(url + "/echo", timeout=5).json()["revision"] == first.id
    router_stack.stop_revision("echo", second.id)
    states = {r.id: r.state for r in router_stack.revisions("echo")}
    assert states == {first.id: "live", second.id: "stopped"}


def test_in_flight_requests_finish_on_the_old_revision_after_a_switch(router_stack: StackControl) -> None:
    first = deploy_echo(router_stack)
    url = router_stack.service("echo").url
    held: dict[str, object] = {}

    def hold() -> None:
        held["response"] = requests.get(url + "/hold", timeout=60).json()

    holder = threading.Thread(target=hold)
    holder.start()
    processes.wait_until(
        lambda: router_stack.routes()["echo"]["in_flight"].get(first.url, 0) == 1,
        "the held request showing up as in flight on the first revision",
        20,
    )
    second = deploy_echo(router_stack, route=False)
    router_stack.route("echo", second.id)
    assert router_stack.routes()["echo"]["in_flight"] == {first.url: 1}
    assert requests.get(url + "/echo", timeout=5).json()["revision"] == second.id
    requests.post(first.url + "/release", timeout=5)
    holder.join(timeout=30)
    assert held["response"] == {"revision": first.id, "released": True}
    router_stack.drain("echo", first.url, timeout=10)


def test_a_revision_that_is_not_ready_is_stopped_with_its_readiness_message(
    router_stack: StackControl,
) -> None:
    live = deploy_echo(router_stack)
    with pytest.raises(RevisionFailed, match="missing required settings: ECHO_TOKEN"):
        deploy_echo(router_stack, env_overrides={"ECHO_REQUIRED": "ECHO_TOKEN"})
    revisions = router_stack.revisions("echo")
    assert [r.state for r in revisions] == ["live", "failed"]
    # Traffic never left the live revision.
    assert requests.get(router_stack.service("echo").url + "/echo", timeout=5).json()["revision"] == live.id


def test_secret_override_values_never_reach_the_state_file(router_stack: StackControl) -> None:
    deploy_echo(router_stack, env_overrides={"ECHO_API_KEY": "s3cr3t-value", "MODE": "plain"})
    text = router_stack.state_path.read_text()
    assert "s3cr3t-value" not in text
    assert router_stack.revisions("echo")[0].env == {"ECHO_API_KEY": "<secret>", "MODE": "plain"}


def test_zero_dropped_requests_during_route_switches(router_stack: StackControl, tmp_path: Path) -> None:
    """Clients hammer the stable URL while two new revisions are deployed, routed, drained, stopped."""
    first = deploy_echo(router_stack)
    url = router_stack.service("echo").url
    stop = threading.Event()
    lock = threading.Lock()
    served: Counter[str] = Counter()
    failures: list[str] = []
    sent = 0
    progress = threading.Condition(lock)

    def client(index: int) -> None:
        nonlocal sent
        session = requests.Session()
        n = 0
        while not stop.is_set():
            n += 1
            body = f"client-{index}-request-{n}"
            try:
                response = session.post(url + f"/echo?n={n}", data=body, timeout=30)
                ok = response.status_code == 200 and response.json()["body"] == body
                revision = response.json().get("revision", "?") if ok else ""
                problem = "" if ok else f"HTTP {response.status_code}: {response.text[:100]}"
            except (requests.RequestException, ValueError) as exc:
                ok, revision, problem = False, "", repr(exc)
            with progress:
                sent += 1
                if ok:
                    served[revision] += 1
                else:
                    failures.append(problem)
                progress.notify_all()

    def wait_for(revision_id: str, count: int) -> None:
        with progress:
            assert progress.wait_for(lambda: served[revision_id] >= count or failures, timeout=60), (
                f"revision {revision_id} never served {count} requests through the router"
            )

    clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    started = time.monotonic()
    for thread in clients:
        thread.start()
    try:
        wait_for(first.id, 50)
        second = deploy_echo(router_stack)  # routes, drains and stops the first
        wait_for(second.id, 50)
        third = deploy_echo(router_stack)
        wait_for(third.id, 50)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
    elapsed = time.monotonic() - started
    states = {r.id: r.state for r in router_stack.revisions("echo")}
    result = {
        "sent": sent,
        "failed": len(failures),
        "served_per_revision": dict(served),
        "switches": 2,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(sent / elapsed, 1),
        "failures": failures[:10],
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=2))
    print(f"revision switch: {json.dumps(result)}")
    assert failures == [], f"{len(failures)} of {sent} requests failed during the switch: {failures[:3]}"
    assert states == {first.id: "stopped", second.id: "stopped", third.id: "live"}
    assert served[first.id]
    assert served[second.id]
    assert served[third.id]


def test_route_refuses_a_revision_that_stopped_answering(router_stack: StackControl) -> None:
    live = deploy_echo(router_stack)
    candidate = deploy_echo(router_stack, route=False)
    processes.stop_group(candidate.pgid)
    with pytest.raises(ControlError, match="not ready"):
        router_stack.route("echo", candidate.id)
    assert router_stack.live_revision("echo").id == live.id  # type: ignore[union-attr]
    assert requests.get(router_stack.service("echo").url + "/echo", timeout=5).json()["revision"] == live.id


def test_a_stack_still_starting_is_not_healthy_until_it_says_it_is_ready(router_stack: StackControl) -> None:
    """A second user of a stack mid-start waits for it, never taking a half-deployed stack as ready."""
    path = Path(router_stack.state_path)
    starter = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        with state.update(path) as current:
            current.owner_pid = starter.pid
        began = time.monotonic()
        assert not runner.healthy(path, start_timeout=1.0), "a stack without ready_at counted as healthy"
        assert time.monotonic() - began >= 1.0, "healthy() gave up before its bound instead of waiting"
        with state.update(path) as current:
            current.ready_at = "2026-12-02T00:00:00+00:00"
        assert runner.healthy(path, start_timeout=1.0), "a ready stack whose router answers is not healthy"
        with state.update(path) as current:
            current.ready_at = ""
    finally:
        starter.communicate(b"", timeout=10)
    # The starter is gone (crashed mid-start or a stack of older records): the router decides.
    assert runner.healthy(path, start_timeout=1.0)


def _served_by(url: str, count: int) -> Counter[str]:
    """Send count requests one after the other; how many each revision answered (all must be 200)."""
    served: Counter[str] = Counter()
    with requests.Session() as session:
        for n in range(count):
            response = session.get(f"{url}/echo?n={n}", timeout=10)
            assert response.status_code == 200, (
                f"request {n}: HTTP {response.status_code} {response.text[:100]}"
            )
            served[response.headers["X-Echo-Revision"]] += 1
    return served


@pytest.mark.parametrize("percents", [(95, 5), (75, 25), (50, 50), (0, 100)])
def test_a_split_shares_requests_by_percent_and_counts_them_per_revision(
    router_stack: StackControl, percents: tuple[int, int]
) -> None:
    baseline = deploy_echo(router_stack)
    candidate = deploy_echo(router_stack, route=False, tag="canary")
    router_stack.split_traffic("echo", {baseline.id: percents[0], candidate.id: percents[1]})
    before = router_stack.revision_stats("echo")
    served = _served_by(router_stack.service("echo").url, 200)
    # Smooth weighted round-robin: every 100 requests follow the percentages exactly.
    assert served == Counter({baseline.id: 2 * percents[0], candidate.id: 2 * percents[1]}) - Counter()
    after = router_stack.revision_stats("echo", since=before["sequence"])
    counted = {revision: len(samples) for revision, samples in after["samples"].items()}
    assert counted == dict(served), "the router's samples disagree with what the clients saw"
    for revision, samples in after["samples"].items():
        assert all(status == 200 and milliseconds > 0 for _, status, milliseconds in samples), revision
        assert after["counts"][revision]["2xx"] >= served[revision]
    routes = router_stack.routes()["echo"]
    assert {t["revision"]: t["percent"] for t in routes["traffic"]} == {
        baseline.id: percents[0],
        candidate.id: percents[1],
    }
    # The state's live revision is still the baseline: a split is a step, route() is the switch.
    assert router_stack.live_revision("echo").id == baseline.id  # type: ignore[union-attr]


def test_errors_are_counted_against_the_revision_that_answered(router_stack: StackControl) -> None:
    baseline = deploy_echo(router_stack)
    candidate = deploy_echo(router_stack, route=False)
    router_stack.split_traffic("echo", {baseline.id: 50, candidate.id: 50})
    url = router_stack.service("echo").url
    statuses = [requests.get(f"{url}/status/503", timeout=10).status_code for _ in range(10)]
    assert statuses == [503] * 10
    counts = router_stack.revision_stats("echo")["counts"]
    assert {revision: c.get("5xx") for revision, c in counts.items()} == {baseline.id: 5, candidate.id: 5}
    processes.stop_group(candidate.pgid)  # a revision that stops answering: the router's 502 is its own
    statuses = [requests.get(f"{url}/echo", timeout=10).status_code for _ in range(4)]
    assert sorted(statuses) == [200, 200, 502, 502]
    assert router_stack.revision_stats("echo")["counts"][candidate.id]["5xx"] == 7


def test_a_split_that_cannot_be_applied_is_refused_and_traffic_stays(router_stack: StackControl) -> None:
    baseline = deploy_echo(router_stack)
    candidate = deploy_echo(router_stack, route=False)
    refused = {
        "the percents must add up to 100": {baseline.id: 90, candidate.id: 5},
        "from 0 to 100": {baseline.id: 150, candidate.id: -50},
        "has no revision": {baseline.id: 50, "echo-nope": 50},
    }
    for message, percents in refused.items():
        with pytest.raises(ControlError, match=message):
            router_stack.split_traffic("echo", percents)
    with pytest.raises(ControlError, match="names no revision"):
        router_stack.split_traffic("echo", {})
    with pytest.raises(ControlError, match="targets must be"):
        router_stack._admin("PUT", "/services/echo/traffic", {"targets": []})
    assert _served_by(router_stack.service("echo").url, 10) == Counter({baseline.id: 10})
    with pytest.raises(ControlError, match="since must be a sequence number"):
        router_stack._admin("GET", "/services/echo/stats?since=-1")


def test_zero_dropped_requests_while_the_split_changes(router_stack: StackControl) -> None:
    """Clients send without pause while the candidate's share goes 5, 25, 50, 100 and back to 0."""
    baseline = deploy_echo(router_stack)
    candidate = deploy_echo(router_stack, route=False)
    url = router_stack.service("echo").url
    stop = threading.Event()
    progress = threading.Condition()
    served: Counter[str] = Counter()
    failures: list[str] = []

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.get(url + "/echo", timeout=30)
                    revision = (
                        response.headers.get("X-Echo-Revision", "") if response.status_code == 200 else ""
                    )
                    problem = "" if revision else f"HTTP {response.status_code}"
                except requests.RequestException as exc:
                    revision, problem = "", repr(exc)
                with progress:
                    if revision:
                        served[revision] += 1
                    else:
                        failures.append(problem)
                    progress.notify_all()

    def after_more(count: int) -> None:
        with progress:
            target = sum(served.values()) + count
            assert progress.wait_for(lambda: sum(served.values()) >= target or failures, timeout=60), (
                f"the clients never got {count} more answers"
            )

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        for share in (5, 25, 50, 100, 0):
            router_stack.split_traffic("echo", {baseline.id: 100 - share, candidate.id: share})
            after_more(40)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
    assert failures == [], f"{len(failures)} requests failed while the split changed: {failures[:3]}"
    assert served[baseline.id], "the baseline never answered"
    assert served[candidate.id], "the candidate never answered"
