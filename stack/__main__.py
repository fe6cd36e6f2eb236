"""`python -m stack up [--detach] | down | status`: the local stack from the command line."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from stack import processes, runner, state


def _stop_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # Turned into an exception so a SIGTERM during start still stops what was already started.
    raise SystemExit(128 + signum)


def _up(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        started = runner.start(args.state_file, strict=args.strict, import_metadata=args.import_data)
    except runner.StackError as exc:
        print(f"stack up failed: {exc}", file=sys.stderr)
        return 1
    current = state.read(started.state_path)
    for line in runner.describe(current):
        print(line)
    if started.skipped:
        print(f"not running (not implemented yet): {', '.join(sorted(started.skipped))}")
    print(f"state file: {started.state_path}")
    if args.detach:
        processes.REGISTRY.detach_all()
        print("detached; stop it with `python -m stack down`")
        return 0
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    print("running; Ctrl-C stops everything")
    try:
        stopping.wait()
    finally:
        print("stopping...")
        started.stop()
    return 0


def _down(args: argparse.Namespace) -> int:
    path = args.state_file or state.default_path()
    if not Path(path).exists():
        print(f"no running stack ({path} does not exist)")
        return 0
    stopped = runner.stop(path)
    print(f"stopped {len(stopped)} process groups: {', '.join(stopped)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        current = state.read(args.state_file)
    except state.StateError as exc:
        print(str(exc))
        return 1
    lines, ok = runner.status_lines(current)
    for line in lines:
        print(line)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the subcommand."""
    parser = argparse.ArgumentParser(prog="python -m stack", description="The local imageflow stack.")
    parser.add_argument(
        "--state-file", type=Path, default=None, help="default: $IMAGEFLOW_STACK_FILE or .stack/stack.json"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start emulators, router, infrastructure and every service")
    up.add_argument("--detach", action="store_true", help="leave the stack running and return")
    up.add_argument(
        "--allow-missing",
        dest="strict",
        action="store_false",
        help="skip (and report) services whose module or create_app does not exist yet",
    )
    up.add_argument(
        "--import-data",
        type=Path,
        default=None,
        metavar="METADATA",
        help="start Firestore with an export loaded (its .overall_export_metadata file)",
    )
    commands.add_parser("down", help="stop every process of the running stack")
    commands.add_parser("status", help="what runs and whether it is healthy")
    args = parser.parse_args(argv)
    handlers = {"up": _up, "down": _down, "status": _status}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
