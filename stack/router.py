"""A local stand-in for Cloud Run traffic routing: one stable port per service, atomic switches.

Run as its own process: `python -m stack.router --admin-port P`. Every request on a service's
stable port is forwarded unchanged (redirects are not followed) to one of the service's revisions:
the live one, or by weight when the traffic is split (as `gcloud run services update-traffic
--to-revisions=A=95,B=5` does), picked by smooth weighted round-robin so that any window of 100
requests follows the percentages to within one request. A switch or a new split only changes
where NEW requests go; requests already in flight finish where they were sent, and GET /services
shows the in-flight count per upstream so a controller can drain it. Each request's status class
and latency are counted per revision (GET /services/NAME/stats), the samples a canary judges.
"""

from __future__ import annotations

import argparse
import http.client
import json
import selectors
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
UPSTREAM_TIMEOUT_SECONDS = 300.0
# The Pub/Sub emulator leaves push connections open without reusing them: a drill of 20 canaries
# left 1,060 of them on the router. Idle this long, a client connection is closed.
IDLE_SECONDS = 30.0
# Headers that describe one hop of a connection, never forwarded (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        # The router answers 100-continue itself and always sends the whole body upstream.
        "expect",
    }
)


# Per service, the latest request samples kept for GET /services/NAME/stats (older ones are dropped).
SAMPLES_KEPT = 50_000


@dataclass
class Target:
    """One revision taking a share of a service's new requests."""

    revision: str
    upstream: str
    percent: int
    # Smooth weighted round-robin's running score (nginx's algorithm): exact shares, no randomness.
    score: int = 0


@dataclass
class Route:
    """Where one service's new requests go, how many are in flight per upstream, and how they went."""

    name: str
    port: int
    targets: list[Target] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    served: int = 0
    # (sequence number, revision, status, milliseconds) of the latest requests, oldest first.
    samples: deque[tuple[int, str, int, float]] = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))
    # Per revision: requests and status classes ("2xx", "5xx", ...) since the router started.
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def live(self) -> Target | None:
        """The target with the largest share (the live revision when traffic is not split)."""
        return max(self.targets, key=lambda t: t.percent, default=None)

    def pick(self) -> Target | None:
        """The next request's target: smooth weighted round-robin over the targets with a share."""
        weighted = [t for t in self.targets if t.percent > 0]
        if not weighted:
            return None
        for target in weighted:
            target.score += target.percent
        chosen = max(weighted, key=lambda t: t.score)
        chosen.score -= sum(t.percent for t in weighted)
        return chosen


class RouteTable:
    """All services' routes behind one lock, so a switch and a request's pick never interleave."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        self._sequence = 0

    def add(self, name: str, port: int) -> Route:
        """Register a service on its stable port."""
        with self._lock:
            route = Route(name=name, port=port)
            self._routes[name] = route
            return route

    def get(self, name: str) -> Route | None:
        """The route of a service, if registered."""
        with self._lock:
            return self._routes.get(name)

    def switch(self, name: str, revision: str, upstream: str) -> dict[str, Any]:
        """Send all of the service's new requests to upstream from now on."""
        return self.split(name, [Target(revision, upstream, 100)])

    def split(self, name: str, targets: list[Target]) -> dict[str, Any]:
        """Share the service's new requests between targets by percent; returns the previous live one."""
        with self._lock:
            route = self._routes[name]
            live = route.live
            previous = {"revision": live.revision, "upstream": live.upstream} if live else {}
            route.targets = [Target(t.revision, t.upstream, t.percent) for t in targets]
            return previous

    def acquire(self, name: str) -> tuple[str, str] | None:
        """Pick the upstream for one request and count it as in flight (one atomic step)."""
        with self._lock:
            route = self._routes[name]
            target = route.pick()
            if target is None:
                return None
            route.in_flight[target.upstream] = route.in_flight.get(target.upstream, 0) + 1
            route.served += 1
            return target.revision, target.upstream

    def release(self, name: str, revision: str, upstream: str, status: int, milliseconds: float) -> None:
        """One request to upstream has finished (response fully sent or failed) with this status."""
        with self._lock:
            route = self._routes[name]
            count = route.in_flight.get(upstream, 0) - 1
            if count > 0:
                route.in_flight[upstream] = count
            else:
                route.in_flight.pop(upstream, None)
            self._sequence += 1
            route.samples.append((self._sequence, revision, status, round(milliseconds, 2)))
            counts = route.counts.setdefault(revision, {"requests": 0})
            counts["requests"] += 1
            status_class = f"{status // 100}xx"
            counts[status_class] = counts.get(status_class, 0) + 1

    def stats(self, name: str, since: int = 0) -> dict[str, Any]:
        """Per revision its counts, and the samples after sequence number `since` (status, ms)."""
        with self._lock:
            route = self._routes[name]
            samples: dict[str, list[list[float]]] = {}
            for sequence, revision, status, milliseconds in route.samples:
                if sequence > since:
                    samples.setdefault(revision, []).append([sequence, status, milliseconds])
            return {
                "sequence": self._sequence,
                "counts": {revision: dict(counts) for revision, counts in route.counts.items()},
                "samples": samples,
            }

    def snapshot(self) -> dict[str, Any]:
        """Every route with its traffic and in-flight counts, for the admin API."""
        with self._lock:
            return {
                name: {
                    "url": f"http://{HOST}:{route.port}",
                    "port": route.port,
                    "revision": route.live.revision if route.live else "",
                    "upstream": route.live.upstream if route.live else "",
                    "traffic": [
                        {"revision": t.revision, "upstream": t.upstream, "percent": t.percent}
                        for t in route.targets
                    ],
                    "in_flight": dict(route.in_flight),
                    "served": route.served,
                }
                for name, route in self._routes.items()
            }


class _Server(ThreadingHTTPServer):
    """A threaded server with a deep accept queue, so bursts are queued rather than refused."""

    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, whether sent with Content-Length or chunked."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # Trailer lines end with an empty line.
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


BODY_SEND_CHUNK_BYTES = 64 * 1024


def _send_body(connection: http.client.HTTPConnection, body: bytes) -> None:
    """Send the body unless the upstream answers first (as a proxy does for an early 413).

    An upstream that refuses a body from its headers answers and closes without reading the rest;
    sending on would fail with a broken pipe and lose its answer, so sending stops at the first
    byte of an answer or at a send error, and the answer already sent is what gets relayed.
    """
    sock = connection.sock
    if not body or sock is None:
        return
    view = memoryview(body)
    sent = 0
    # A selector, not select(): a router serving many keep-alive connections has descriptors above
    # FD_SETSIZE (1024), which select() refuses with "filedescriptor out of range".
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while sent < len(view):
            ready = selector.select(UPSTREAM_TIMEOUT_SECONDS)
            events = ready[0][1] if ready else 0
            if events & selectors.EVENT_READ or not events & selectors.EVENT_WRITE:
                return
            try:
                sent += sock.send(view[sent : sent + BODY_SEND_CHUNK_BYTES])
            except OSError:
                return


def make_proxy_handler(
    table: RouteTable, service: str, idle_seconds: float = IDLE_SECONDS
) -> type[BaseHTTPRequestHandler]:
    """A request handler class that forwards everything to the service's live upstream."""

    class ProxyHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "imageflow-router"
        # The client socket's timeout: a keep-alive connection idle this long is closed (as Cloud
        # Run's front end closes idle ones), else every connection a client abandons keeps a thread
        # and a descriptor for the stack's lifetime.
        timeout = idle_seconds

        def log_message(self, format: str, *args: object) -> None:
            """Keep the router's log to errors only: request lines could carry tokens in queries."""

        def _forward(self) -> None:
            body = _read_body(self)
            picked = table.acquire(service)
            if picked is None:
                self._plain(503, f"no live revision for service {service}\n")
                return
            revision, upstream = picked
            started = time.monotonic()
            # The revision's own answer once it has one: a client hanging up later is not its failure.
            self.upstream_status = 502
            try:
                self._relay(upstream, body)
            except (OSError, http.client.HTTPException) as exc:
                sys.stderr.write(f"router: {service} -> {revision} ({upstream}) failed: {exc!r}\n")
                if self.upstream_status == 502:
                    self._plain(502, f"upstream revision {revision} of {service} failed\n")
            finally:
                elapsed_ms = (time.monotonic() - started) * 1000
                table.release(service, revision, upstream, self.upstream_status, elapsed_ms)

        def _relay(self, upstream: str, body: bytes) -> None:
            target = urlsplit(upstream)
            connection = http.client.HTTPConnection(
                target.hostname or HOST, target.port or 80, timeout=UPSTREAM_TIMEOUT_SECONDS
            )
            try:
                connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
                        continue
                    connection.putheader(name, value)
                if body or self.command in ("POST", "PUT", "PATCH"):
                    connection.putheader("Content-Length", str(len(body)))
                connection.putheader("X-Forwarded-For", self.client_address[0])
                connection.putheader("X-Forwarded-Proto", "http")
                connection.endheaders()
                _send_body(connection, body)
                response = connection.getresponse()
                payload = response.read()
                self.upstream_status = int(response.status)
                self.send_response_only(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
                        continue
                    self.send_header(name, value)
                if self.command != "HEAD" and response.status not in (204, 304):
                    self.send_header("Content-Length", str(len(payload)))
                elif response.getheader("Content-Length") is not None:
                    self.send_header("Content-Length", response.getheader("Content-Length", "0"))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                self.wfile.flush()
            finally:
                connection.close()

        def _plain(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

    return ProxyHandler


class Router:
    """The route table plus one listening server per service and the admin server."""

    def __init__(self, admin_port: int, idle_seconds: float = IDLE_SECONDS) -> None:
        self.table = RouteTable()
        self.idle_seconds = idle_seconds
        self._servers: list[ThreadingHTTPServer] = []
        self._lock = threading.Lock()
        self.admin = _Server((HOST, admin_port), make_admin_handler(self))
        self._servers.append(self.admin)

    def add_service(self, name: str, port: int = 0) -> dict[str, Any]:
        """Open the stable port of a service (idempotent: an existing service keeps its port)."""
        with self._lock:
            existing = self.table.get(name)
            if existing is not None:
                return {"name": name, "url": f"http://{HOST}:{existing.port}", "port": existing.port}
            server = _Server((HOST, port), make_proxy_handler(self.table, name, self.idle_seconds))
            bound = int(server.server_address[1])
            self.table.add(name, bound)
            self._servers.append(server)
            threading.Thread(target=server.serve_forever, name=f"router-{name}", daemon=True).start()
            return {"name": name, "url": f"http://{HOST}:{bound}", "port": bound}

    def serve_forever(self) -> None:
        """Serve the admin API until shutdown() is called."""
        self.admin.serve_forever()

    def shutdown(self) -> None:
        """Stop every listener."""
        for server in self._servers:
            threading.Thread(target=server.shutdown, daemon=True).start()


def make_admin_handler(router: Router) -> type[BaseHTTPRequestHandler]:
    """The admin API: add services, switch routes, read routes and in-flight counts."""

    class AdminHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Admin calls are logged by the controller that makes them."""

        def _json(self, status: int, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any] | None:
            try:
                value = json.loads(_read_body(self) or b"{}")
            except ValueError:
                return None
            return value if isinstance(value, dict) else None

        def do_GET(self) -> None:
            """GET /healthz, GET /services, GET /services/NAME/stats?since=N."""
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if url.path == "/healthz":
                self._json(200, {"ok": True})
            elif url.path == "/services":
                self._json(200, {"services": router.table.snapshot()})
            elif len(parts) == 3 and parts[0] == "services" and parts[2] == "stats":
                since = parse_qs(url.query).get("since", ["0"])[0]
                if router.table.get(parts[1]) is None:
                    self._json(404, {"error": f"no service {parts[1]}"})
                elif not since.isdigit():
                    self._json(400, {"error": "since must be a sequence number (0 or more)"})
                else:
                    self._json(200, router.table.stats(parts[1], int(since)))
            else:
                self._json(404, {"error": f"unknown path {self.path}"})

        def do_POST(self) -> None:
            """POST /services {"name", "port"?} -> {"url"}."""
            body = self._body()
            if self.path != "/services":
                self._json(404, {"error": f"unknown path {self.path}"})
                return
            if body is None or not isinstance(body.get("name"), str) or not body["name"]:
                self._json(400, {"error": 'body must be {"name": "..."}'})
                return
            port = body.get("port", 0)
            if not isinstance(port, int):
                self._json(400, {"error": "port must be an integer"})
                return
            try:
                self._json(200, router.add_service(body["name"], port))
            except OSError as exc:
                self._json(409, {"error": f"cannot listen on port {port}: {exc.strerror}"})

        def do_PUT(self) -> None:
            """PUT /services/NAME/route {"revision", "upstream"}, PUT /services/NAME/traffic {"targets"}."""
            parts = self.path.strip("/").split("/")
            body = self._body()
            if len(parts) != 3 or parts[0] != "services" or parts[2] not in ("route", "traffic"):
                self._json(404, {"error": f"unknown path {self.path}"})
                return
            name = parts[1]
            if router.table.get(name) is None:
                self._json(404, {"error": f"no service {name}"})
                return
            if parts[2] == "route":
                targets = [{**body, "percent": 100}] if body is not None else None
            else:
                targets = body.get("targets") if body is not None else None
            problem = _traffic_problem(targets)
            if problem:
                self._json(400, {"error": problem})
                return
            assert targets is not None  # no problem found
            chosen = [Target(t["revision"], t["upstream"], t["percent"]) for t in targets]
            previous = router.table.split(name, chosen)
            live = max(chosen, key=lambda t: t.percent)
            self._json(
                200,
                {
                    "name": name,
                    "revision": live.revision,
                    "upstream": live.upstream,
                    "traffic": targets,
                    "previous": previous,
                },
            )

    return AdminHandler


def _traffic_problem(targets: object) -> str:
    """Why a traffic split is refused (one line), or "" for a split the router can apply."""
    shape = 'targets must be [{"revision": "...", "upstream": "http://127.0.0.1:PORT", "percent": N}, ...]'
    if not isinstance(targets, list) or not targets:
        return shape
    for target in targets:
        if not isinstance(target, dict) or not all(
            isinstance(target.get(k), str) and target[k] for k in ("revision", "upstream")
        ):
            return shape
        percent = target.get("percent")
        if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
            return "each percent must be a whole number from 0 to 100"
        upstream = urlsplit(target["upstream"])
        if upstream.scheme != "http" or upstream.hostname not in (HOST, "localhost"):
            return "upstream must be an http URL on 127.0.0.1"
    if len({t["revision"] for t in targets}) != len(targets):
        return "each revision may appear once"
    if sum(t["percent"] for t in targets) != 100:
        return "the percents must add up to 100"
    return ""


def main(argv: list[str] | None = None) -> int:
    """Run the router until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m stack.router", description=__doc__.splitlines()[0])
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument(
        "--idle-seconds", type=float, default=IDLE_SECONDS, help="close a client connection idle this long"
    )
    args = parser.parse_args(argv)
    if args.idle_seconds <= 0:
        parser.error("--idle-seconds must be positive")
    try:
        router = Router(args.admin_port, args.idle_seconds)
    except OSError as exc:
        print(f"router: cannot listen on {HOST}:{args.admin_port}: {exc.strerror}", file=sys.stderr)
        return 1

    def stop(_signum: int, _frame: FrameType | None) -> None:
        router.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"router admin on http://{HOST}:{args.admin_port}", flush=True)
    router.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
