"""One entrypoint for all services: `python -m imageflow.serve SERVICE` serves create_app() with waitress.

One container image serves the dashboard or any agent, chosen by argument, as on Cloud Run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from imageflow import manifest as manifest_module
from imageflow import traffic_faults
from imageflow.config import ConfigError, parse_faults
from imageflow.manifest import ManifestError

# Exit code when the service's module or its create_app does not exist (EX_CONFIG of sysexits.h);
# the stack runner reports such a service as not implemented rather than as crashed.
EXIT_NOT_IMPLEMENTED = 78
EXIT_USAGE = 2


def find_factory(service: str) -> Callable[..., Any]:
    """The create_app of the service's module named in the manifest; SystemExit with one line if absent."""
    try:
        manifest = manifest_module.default()
    except ManifestError as exc:
        raise SystemExit(_fail(f"cannot read the pipeline manifest: {exc}", EXIT_USAGE)) from exc
    specs = {spec.name: spec for spec in manifest.services}
    spec = specs.get(service)
    if spec is None:
        known = ", ".join(specs)
        raise SystemExit(_fail(f"unknown service {service!r}; the manifest has: {known}", EXIT_USAGE))
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name and spec.module.startswith(exc.name):
            raise SystemExit(
                _fail(f"service {service}: module {spec.module} does not exist yet", EXIT_NOT_IMPLEMENTED)
            ) from exc
        raise
    factory = getattr(module, "create_app", None)
    if not callable(factory):
        raise SystemExit(_fail(f"service {service}: {spec.module} has no create_app()", EXIT_NOT_IMPLEMENTED))
    return factory  # type: ignore[no-any-return]


def _fail(message: str, code: int) -> int:
    print(f"imageflow.serve: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m imageflow.serve", description=__doc__.splitlines()[0])
    parser.add_argument("service", help='"dashboard" or an agent name from the pipeline manifest')
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default $PORT, else 8080)")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    port = args.port if args.port is not None else int(os.environ.get("PORT") or 8080)
    factory = find_factory(args.service)
    try:
        app = factory()
        # Faults only traffic shows wrap the service from outside; config refuses them where real users are.
        faults = parse_faults(
            os.environ.get("IMAGEFLOW_FAULTS", ""), os.environ.get("IMAGEFLOW_ENV", "local")
        )
    except ConfigError as exc:
        # A refused configuration (e.g. a fault switch on staging) is one line, not a traceback.
        return _fail(f"service {args.service}: {exc}", 1)

    import waitress  # imported late: a missing service fails fast without loading the server

    print(
        f"imageflow.serve: {args.service} revision {os.environ.get('K_REVISION', '?')} on {args.host}:{port}",
        flush=True,
    )
    # A service that declares its own body limit (the agents' push limit) has the server refuse
    # a larger body from its headers or mid-chunk, before buffering it (waitress refuses >= its size).
    body_limit = app.config.get("IMAGEFLOW_SERVER_BODY_LIMIT")
    limits = {"max_request_body_size": int(body_limit) + 1} if body_limit else {}
    waitress.serve(
        traffic_faults.wrap(app, args.service, faults),
        host=args.host,
        port=port,
        threads=args.threads,
        ident=None,
        clear_untrusted_proxy_headers=True,
        **limits,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
