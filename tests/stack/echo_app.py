"""A tiny service for testing the router and revision control (not a stand-in for any imageflow service).

Served by `python -m imageflow.serve` through a test manifest, or directly with
`python tests/stack/echo_app.py --port P`. It answers what it received, so a test can check
that the router forwarded everything unchanged.
"""

from __future__ import annotations

import argparse
import os
import threading
from typing import Any

from flask import Flask, Response, jsonify, redirect, request
from werkzeug.wrappers import Response as BaseResponse

# Lets a test hold requests in flight across a route switch without sleeping: a request to
# /hold waits (bounded) on this event, released by /release.
_RELEASE = threading.Event()


def create_app(settings: Any = None) -> Flask:
    """The echo service; not ready when ECHO_REQUIRED names a variable that is unset."""
    app = Flask(__name__)
    revision = os.environ.get("K_REVISION", "echo-unversioned")
    required = [k for k in os.environ.get("ECHO_REQUIRED", "").split(",") if k]

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(ok=True)

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        missing = [k for k in required if not os.environ.get(k)]
        report: dict[str, Any] = {
            "service": "echo",
            "revision": revision,
            "ready": not missing,
            "missing": missing,
        }
        if missing:
            report["message"] = "missing required settings: " + ", ".join(missing)
        return jsonify(report), 503 if missing else 200

    @app.route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @app.route("/echo/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def echo(rest: str = "") -> Response:
        response = jsonify(
            revision=revision,
            method=request.method,
            path=request.path,
            query=request.query_string.decode(),
            headers=dict(request.headers),
            body=request.get_data().decode("latin-1"),
            cookies=request.cookies,
        )
        response.headers["X-Echo-Revision"] = revision
        return response

    @app.get("/redirect")
    def to_target() -> BaseResponse:
        response = redirect("/target?from=redirect", code=302)
        response.set_cookie("session", "abc", httponly=True)
        response.set_cookie("theme", "dark")
        return response

    @app.get("/hold")
    def hold() -> Response:
        released = _RELEASE.wait(timeout=30)
        return jsonify(revision=revision, released=released)

    @app.post("/release")
    def release() -> Response:
        _RELEASE.set()
        return jsonify(released=True)

    @app.route("/status/<int:code>", methods=["GET", "POST"])
    def status(code: int) -> tuple[str, int]:
        return "", code

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "0")))
    args = parser.parse_args()
    import waitress

    waitress.serve(create_app(), host=args.host, port=args.port, threads=8, ident=None)
