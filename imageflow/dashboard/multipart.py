"""Multipart parsing that survives part headers which are not UTF-8 (e.g. a raw Latin-1 filename).

Werkzeug decodes each part's headers as strict UTF-8; one undecodable byte in a filename makes
the whole form parse fail silently, so the request looks empty (no files, no CSRF token). This
decoder replaces such bytes with U+FFFD instead, so the file arrives and its name is cleaned
like any other. Valid UTF-8 is untouched, so nothing else changes.
"""

from __future__ import annotations

from werkzeug import formparser
from werkzeug.datastructures import Headers
from werkzeug.sansio.multipart import MultipartDecoder


class TolerantMultipartDecoder(MultipartDecoder):
    """A MultipartDecoder whose part headers are decoded with replacement characters."""

    def _parse_headers(self, data: bytes | bytearray) -> Headers:
        return super()._parse_headers(bytes(data).decode("utf-8", "replace").encode("utf-8"))


def install() -> None:
    """Make Werkzeug's form parser use the tolerant decoder (idempotent; process-wide)."""
    # formparser looks the decoder up as a module global at parse time; there is no hook for it.
    formparser.MultipartDecoder = TolerantMultipartDecoder  # type: ignore[misc]
