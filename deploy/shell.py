"""Run external commands for a step: recorded, echoed, timed; or only printed in a dry run."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TextIO, TypeVar

from deploy.record import CommandEntry, RunRecord
from deploy.steps import StepFailed
from fixtures.scrubber import MIN_SECRET_LENGTH, scrub_bytes, secret_patterns
from stack.processes import stop_group

# Long cloud operations (deploy, export) may take minutes; a hung CLI must still end the step.
DEFAULT_TIMEOUT = 1800.0
# A streamed command's last lines kept in the run record (the whole output went to the console).
OUTPUT_TAIL_LINES = 100
# How long the output readers may outlast a stopped command (a grandchild holding its pipes).
STOP_GRACE_S = 10.0
# Between SIGTERM and SIGKILL of a stopped command's group: the suite's teardown (browsers, taps,
# test users) runs on SIGTERM and needs longer than a CLI does.
TERM_GRACE_S = 30.0
# Streamed lines are indented under the `$ command` line they belong to.
OUTPUT_INDENT = "      "
T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    """What a command answered."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True on exit code 0."""
        return self.exit_code == 0


def last_line(text: str) -> str:
    """The last non-empty line of text (a CLI's error line), or ""."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


class Shell:
    """Runs commands for the current step of a record; in a dry run prints them and runs nothing."""

    def __init__(self, record: RunRecord, *, dry_run: bool = False, out: TextIO | None = None) -> None:
        self.record = record
        self.dry_run = dry_run
        self.out = out or sys.stdout
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = {}
        self._patterns: list[bytes] = []

    def register_secret(self, value: str, label: str) -> None:
        """A value masked in every streamed line and recorded output from now on (a token, a key)."""
        if len(value) >= MIN_SECRET_LENGTH and value not in self._secrets:
            self._secrets[value] = label
            self._patterns = sorted(secret_patterns(self._secrets), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """text with every registered secret (raw, URL-encoded, JSON-escaped) and credential header masked."""
        # The reports' scrubber, so the console and the run record mask exactly what reports/ masks.
        return scrub_bytes(text.encode(), self._patterns).decode(errors="replace")

    def say(self, text: str) -> None:
        """Print one line to the terminal."""
        with self._lock:  # parallel local actions: one whole line at a time
            self.out.write(text + "\n")
            self.out.flush()

    def note(self, text: str) -> None:
        """Record and print an action that is not a command (an HTTP check, a local call)."""
        self.say(f"    {text}")
        self.record.command(CommandEntry(command=text, exit_code=None if self.dry_run else 0, duration_s=0.0))

    def action(self, text: str, do: Callable[[], T], dry_result: T) -> T:
        """Record and run a local action (a stack call); its failure becomes StepFailed with the reason."""
        self.say(f"    {text}")
        if self.dry_run:
            self.record.command(CommandEntry(command=text, exit_code=None, duration_s=0.0))
            return dry_result
        started = time.monotonic()
        try:
            result = do()
        except StepFailed as exc:
            self.record.command(CommandEntry(text, 1, round(time.monotonic() - started, 3), str(exc)))
            raise
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.record.command(CommandEntry(text, 1, round(time.monotonic() - started, 3), reason))
            raise StepFailed(f"{text}: {reason}") from exc
        self.record.command(CommandEntry(text, 0, round(time.monotonic() - started, 3)))
        return result

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        when: str = "",
        dry_stdout: str = "",
        env: Mapping[str, str] | None = None,
        stream: bool = False,
        cwd: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Result:
        """Run argv; raise StepFailed with the CLI's error line when check and it fails."""
        text = shlex.join(argv)
        if self.dry_run:
            self.say(f"    $ {text}" + (f"    # {when}" if when else ""))
            self.record.command(CommandEntry(command=text, exit_code=None, duration_s=0.0))
            return Result(tuple(argv), 0, dry_stdout, "")
        text = self.scrub(text)
        self.say(f"    $ {text}")
        started = time.monotonic()
        full_env = {**os.environ, **env} if env else None
        tail: list[str] = []
        try:
            if stream:
                code, stdout, stderr, tail = self._stream(argv, full_env, cwd, timeout)
            else:
                completed = subprocess.run(
                    list(argv),
                    env=full_env,
                    timeout=timeout,
                    check=False,
                    capture_output=True,
                    text=True,
                    cwd=cwd,
                )
                stdout, stderr, code = completed.stdout, completed.stderr, completed.returncode
        except FileNotFoundError as exc:
            self.record.command(CommandEntry(text, 127, time.monotonic() - started, f"{argv[0]} not found"))
            raise StepFailed(f"{argv[0]} not found on PATH") from exc
        except subprocess.TimeoutExpired as exc:
            self.record.command(
                CommandEntry(text, None, time.monotonic() - started, f"timed out after {timeout:.0f}s")
            )
            raise StepFailed(f"`{text}` did not finish within {timeout:.0f}s") from exc
        error = "" if code == 0 else self.scrub(last_line(stderr))
        self.record.command(CommandEntry(text, code, round(time.monotonic() - started, 3), error, tail))
        if code != 0 and check:
            raise StepFailed(f"`{text}` exited {code}" + (f": {error}" if error else ""))
        return Result(tuple(argv), code, stdout, stderr)

    def _stream(
        self, argv: Sequence[str], env: Mapping[str, str] | None, cwd: str | None, timeout: float
    ) -> tuple[int, str, str, list[str]]:
        """Run argv, echoing each output line scrubbed as it comes: exit code, stdout, stderr, tail."""
        captured: dict[str, list[str]] = {"stdout": [], "stderr": []}
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        tail_lock = threading.Lock()

        def pump(name: str, pipe: IO[str]) -> None:
            for line in pipe:
                captured[name].append(line)
                shown = self.scrub(line.rstrip("\n"))
                with tail_lock:
                    tail.append(shown)
                self.say(OUTPUT_INDENT + shown)

        # Its own process group: a timeout or an interrupt stops the CLI and whatever it started.
        with subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        ) as process:
            assert process.stdout is not None
            assert process.stderr is not None
            readers = [
                threading.Thread(target=pump, args=("stdout", process.stdout), daemon=True),
                threading.Thread(target=pump, args=("stderr", process.stderr), daemon=True),
            ]
            for reader in readers:
                reader.start()
            try:
                code = process.wait(timeout=timeout)
            finally:
                if process.poll() is None:
                    # Bounded: SIGTERM, then SIGKILL, until nobody of the group runs any more.
                    stop_group(process.pid, grace=TERM_GRACE_S)
                for reader in readers:
                    # A grandchild still holding the pipes open must not hold the step for ever.
                    reader.join(timeout=STOP_GRACE_S)
        return code, "".join(captured["stdout"]), "".join(captured["stderr"]), list(tail)
