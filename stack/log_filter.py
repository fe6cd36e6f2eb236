"""Run a command, copying its output line by line to this process's stdout with credentials masked.

The Pub/Sub emulator logs every push that was not acknowledged with its endpoint URL, whose
``token=`` parameter is the agents' push verification token: its log must never hold it. The
filter and the command share one process group, so stopping the group stops both; the filter
ends with the command's exit status once the command's output ends.
Usage: ``python -m stack.log_filter COMMAND [ARG ...]``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from imageflow.logs import redact_credentials


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; its output, masked, goes to stdout."""
    command = list(sys.argv[1:] if argv is None else argv)
    if not command:
        print("usage: python -m stack.log_filter COMMAND [ARG ...]", file=sys.stderr)
        return 2
    try:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as exc:
        print(f"log_filter: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    assert child.stdout is not None
    out = sys.stdout.buffer
    for line in child.stdout:
        out.write(redact_credentials(line.decode("utf-8", "replace")).encode())
        out.flush()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
