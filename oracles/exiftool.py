"""The second metadata reader: exiftool (Debian's libimage-exiftool-perl) on bytes through stdin."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

TIMEOUT_SECONDS = 30
COMMAND = ("exiftool", "-j", "-n", "-a", "-u", "-G1", "-")
INSTALL_HINT = "exiftool is not installed: run scripts/bootstrap (Debian package libimage-exiftool-perl)"
# Groups describing the file or the reader itself, not metadata the file carries.
OWN_GROUPS = frozenset({"ExifTool", "System", "File", "SourceFile"})


class ExiftoolMissing(RuntimeError):
    """exiftool is not on PATH."""


class ExiftoolFailed(RuntimeError):
    """exiftool did not answer with JSON in time."""


def available() -> bool:
    """Whether exiftool is on PATH."""
    return shutil.which(COMMAND[0]) is not None


@dataclass(frozen=True)
class Tags:
    """Every tag exiftool read, as ("Group:Name", value) pairs in file order (duplicates kept).

    Values are int, str (decimals too, as written) or lists of the pairs of a structure.
    """

    pairs: tuple[tuple[str, object], ...]

    def first(self, key: str) -> object | None:
        """The first value of "Group:Name", or None."""
        return next((value for name, value in self.pairs if name == key), None)

    def metadata(self) -> Iterator[tuple[str, str, object]]:
        """(group, name, value) of every tag the file carries (the reader's own groups left out)."""
        for key, value in self.pairs:
            group, _, name = key.rpartition(":")
            if group not in OWN_GROUPS and key not in OWN_GROUPS:
                yield group, name, value

    def groups(self) -> set[str]:
        """The metadata groups present (IFD0, ExifIFD, GPS, XMP-exif, IPTC, ...)."""
        return {group for group, _, _ in self.metadata()}


def read(data: bytes, timeout: float = TIMEOUT_SECONDS) -> Tags:
    """Run exiftool on the bytes; raises ExiftoolMissing or ExiftoolFailed with one clear line."""
    if not available():
        raise ExiftoolMissing(INSTALL_HINT)
    try:
        done = subprocess.run(COMMAND, input=data, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ExiftoolFailed(f"exiftool gave no answer within {timeout:.0f} s on {len(data)} bytes") from exc
    try:
        # Duplicate tags of one group are all kept: a second EXIF block must not hide behind the first.
        # Decimals stay the text exiftool wrote: a software version "1.50" is text, not the number 1.5.
        documents = json.loads(done.stdout, object_pairs_hook=lambda pairs: pairs, parse_float=str)
    except ValueError as exc:
        error = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise ExiftoolFailed(f"exiftool exited {done.returncode} without JSON: {error[:1]}") from exc
    if not documents:
        raise ExiftoolFailed(f"exiftool exited {done.returncode} with an empty answer")
    return Tags(tuple((str(key), value) for key, value in documents[0]))
