"""A local stand-in for Cloud Run traffic routing: one stable port per service, atomic switches.

Run as its own process: `python -m stack.router --admin-port P`. Every request on a service's
stable port is forwarded unchanged (redirects are not followed) to the service's live revision.
A switch only changes where NEW requests go; requests already in flight finish on the old
revision, and GET /services shows the in-flight count per upstream so a controller can drain it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import select
import signal
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

HOST = "127.0.0.1"
UPSTREAM_TIMEOUT_SECONDS = 300.0
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


@dataclass
class Route:
    """Where one service's new requests go, and how many are in flight per upstream."""

    name: str
    port: int
    revision: str = ""
    upstream: str = ""
    in_flight: dict[str, int] = field(default_factory=dict)
    served: int = 0


class RouteTable:
    """All services' routes behind one lock, so a switch and a request's pick never interleave."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}

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
        """Send the service's new requests to upstream from now on."""
        with self._lock:
            route = self._routes[name]
            previous = {"revision": route.revision, "upstream": route.upstream}
            route.revision = revision
            route.upstream = upstream
            return previous

    def acquire(self, name: str) -> tuple[str, str] | None:
        """Pick the live upstream for one request and count it as in flight (one atomic step)."""
        with self._lock:
            route = self._routes[name]
            if not route.upstream:
                return None
            route.in_flight[route.upstream] = route.in_flight.get(route.upstream, 0) + 1
            route.served += 1
            return route.revision, route.upstream

    def release(self, name: str, upstream: str) -> None:
        """One request to upstream has finished (response fully sent or failed)."""
        with self._lock:
            route = self._routes[name]
            count = route.in_flight.get(upstream, 0) - 1
            if count > 0:
                route.in_flight[upstream] = count
            else:
                route.in_flight.pop(upstream, None)

    def snapshot(self) -> dict[str, Any]:
        """Every route with its in-flight counts, for the admin API."""
        with self._lock:
            return {
                name: {
                    "url": f"http://{HOST}:{route.port}",
                    "port": route.port,
                    "revision": route.revision,
                    "upstream": route.upstream,
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
    while sent < len(view):
        readable, writable, _ = select.select([sock], [sock], [], UPSTREAM_TIMEOUT_SECONDS)
        if readable or not writable:
            return
        try:
            sent += sock.send(view[sent : sent + BODY_SEND_CHUNK_BYTES])
        except OSError:
            return


def make_proxy_handler(table: RouteTable, service: str) -> type[BaseHTTPRequestHandler]:
    """A request handler class that forwards everything to the service's live upstream."""

    class ProxyHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "imageflow-router"

        def log_message(self, format: str, *args: object) -> None:
            """Keep the router's log to errors only: request lines could carry tokens in queries."""

        def _forward(self) -> None:
            body = _read_body(self)
            picked = table.acquire(service)
            if picked is None:
                self._plain(503, f"no live revision for service {service}\n")
                return
            revision, upstream = picked
            try:
                self._relay(upstream, body)
            except (OSError, http.client.HTTPException) as exc:
                sys.stderr.write(f"router: {service} -> {revision} ({upstream}) failed: {exc!r}\n")
                self._plain(502, f"upstream revision {revision} of {service} failed\n")
            finally:
                table.release(service, upstream)

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

    def __init__(self, admin_port: int) -> None:
        self.table = RouteTable()
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
            server = _Server((HOST, port), make_proxy_handler(self.table, name))
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
            """GET /healthz, GET /services."""
            if self.path == "/healthz":
                self._json(200, {"ok": True})
            elif self.path == "/services":
                self._json(200, {"services": router.table.snapshot()})
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
            """PUT /services/NAME/route {"revision", "upstream"}."""
            parts = self.path.strip("/").split("/")
            body = self._body()
            if len(parts) != 3 or parts[0] != "services" or parts[2] != "route":
                self._json(404, {"error": f"unknown path {self.path}"})
                return
            name = parts[1]
            if router.table.get(name) is None:
                self._json(404, {"error": f"no service {name}"})
                return
            if body is None or not all(
                isinstance(body.get(k), str) and body[k] for k in ("revision", "upstream")
            ):
                self._json(400, {"error": 'body must be {"revision": "...", "upstream": "http://..."}'})
                return
            upstream = body["upstream"]
            if urlsplit(upstream).scheme != "http" or urlsplit(upstream).hostname not in (HOST, "localhost"):
                self._json(400, {"error": "upstream must be an http URL on 127.0.0.1"})
                return
            previous = router.table.switch(name, body["revision"], upstream)
            self._json(
                200, {"name": name, "revision": body["revision"], "upstream": upstream, "previous": previous}
            )

    return AdminHandler


def main(argv: list[str] | None = None) -> int:
    """Run the router until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m stack.router", description=__doc__.splitlines()[0])
    parser.add_argument("--admin-port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        router = Router(args.admin_port)
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
