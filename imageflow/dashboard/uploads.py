"""The upload flow: check each file, strip GPS, create the workflow, store the original, publish.

An upload is accepted only once its original is stored and its message queued. When either fails
the upload is withdrawn (its workflow document and stored original deleted) and the user is told
to try again: nobody is shown an upload that will never be processed. Only when the withdrawal
itself fails is the document kept, marked failed by the dashboard, so it shows failed, never pending.
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from google.cloud import firestore
from werkzeug.utils import secure_filename

from imageflow import clients, test_failures, workflow
from imageflow.config import Settings
from imageflow.dashboard import faults
from imageflow.manifest import Manifest

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 10 * MIB
# How many files one request may carry; the request size limit is derived from it.
MAX_FILES_PER_REQUEST = 10
# Room for multipart boundaries, headers and form fields on top of the files themselves.
REQUEST_OVERHEAD_BYTES = 1 * MIB
ALLOWED_TYPES: dict[str, frozenset[str]] = {
    "jpg": frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    "jpeg": frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    "png": frozenset({"image/png"}),
    "webp": frozenset({"image/webp"}),
    "gif": frozenset({"image/gif"}),
}
# Clients that do not know a file's type send these; the extension then decides, the validator judges bytes.
UNTYPED = frozenset({"", "application/octet-stream"})
CANONICAL_TYPE = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
}
MAX_NAME_LENGTH = 150


def max_upload_bytes(environ: dict[str, str] | None = None) -> int:
    """The per-file limit from IMAGEFLOW_MAX_UPLOAD_BYTES (default 10 MiB); a bad value keeps the default."""
    raw = (environ if environ is not None else os.environ).get("IMAGEFLOW_MAX_UPLOAD_BYTES", "")
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_MAX_UPLOAD_BYTES
    return value if value > 0 else DEFAULT_MAX_UPLOAD_BYTES


def human_size(size: int) -> str:
    """A byte count as the contract writes limits ("10 MiB", "512 KiB", "300 bytes")."""
    if size % MIB == 0:
        return f"{size // MIB} MiB"
    if size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} bytes"


@dataclass(frozen=True)
class CleanName:
    """A client's filename made safe: display for people, safe for the storage object name."""

    display: str
    safe: str
    extension: str


def clean_filename(raw: str | bytes | None) -> CleanName:
    """Strip directories, undecodable bytes and control characters; never raises."""
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", errors="replace")
    else:
        # Undecodable bytes smuggled through as lone surrogates become U+FFFD, not an encode error later.
        try:
            text = (raw or "").encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
        except UnicodeEncodeError:
            text = (raw or "").encode("utf-8", errors="replace").decode("utf-8")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C").strip().lstrip(".")
    if len(text) > MAX_NAME_LENGTH:
        stem, dot, ext = text.rpartition(".")
        text = (
            (stem[: MAX_NAME_LENGTH - len(ext) - 1] + dot + ext)
            if dot and len(ext) <= 10
            else text[:MAX_NAME_LENGTH]
        )
    display = text or "upload"
    stem, dot, ext = display.rpartition(".")
    extension = ext.lower() if dot else ""
    safe_stem = secure_filename(stem if dot else display) or "upload"
    safe = f"{safe_stem}.{extension}" if extension and extension.isalnum() else safe_stem
    return CleanName(display=display, safe=safe, extension=extension)


@dataclass(frozen=True)
class Accepted:
    """A file that became a workflow."""

    filename: str
    workflow_id: str


@dataclass(frozen=True)
class Refused:
    """A file that was refused, with the reason shown to the user."""

    filename: str
    reason: str
    # The service failed, not the file: the same upload may succeed when tried again.
    retry: bool = False


@dataclass(frozen=True)
class IncomingFile:
    """One file of the request: the name as sent, its declared type and a stream of its bytes."""

    filename: str | bytes | None
    content_type: str
    stream: IO[bytes]


def check(name: CleanName, content_type: str, data: bytes, limit: int) -> str | None:
    """The reason a file is refused before anything is stored, or None when it may go on."""
    if not data:
        return f"{name.display} is empty."
    if len(data) > limit:
        return f"{name.display} is larger than {human_size(limit)}."
    declared = content_type.split(";", 1)[0].strip().lower()
    allowed = ALLOWED_TYPES.get(name.extension)
    if allowed is None or (declared not in allowed and declared not in UNTYPED):
        return f"{name.display}: only JPEG, PNG, WebP and GIF images are accepted."
    return None


def _strip_gps(data: bytes) -> tuple[bytes, bool]:
    # Imported lazily: imaging.py is owned by the agents' module and Pillow is heavy to import.
    from imageflow.imaging import strip_gps

    return strip_gps(data)


class Uploader:
    """Turns the files of one request into workflows (admin credentials, as the Cloud Run service)."""

    def __init__(self, settings: Settings, manifest: Manifest, limit: int | None = None) -> None:
        self.settings = settings
        self.manifest = manifest
        self.limit = limit if limit is not None else max_upload_bytes()

    @property
    def request_limit(self) -> int:
        """The largest request body accepted (413 above it)."""
        return MAX_FILES_PER_REQUEST * self.limit + REQUEST_OVERHEAD_BYTES

    def accept_all(
        self, owner: str, files: Iterable[IncomingFile], lane: str = ""
    ) -> tuple[list[Accepted], list[Refused]]:
        """Handle every file of a request (at most MAX_FILES_PER_REQUEST), each independently."""
        accepted: list[Accepted] = []
        refused: list[Refused] = []
        files = list(files)
        if len(files) > MAX_FILES_PER_REQUEST:
            # The request size limit is sized for this many files: a larger request is refused whole.
            names = [clean_filename(incoming.filename).display for incoming in files]
            too_many = f"at most {MAX_FILES_PER_REQUEST} files can be uploaded at once."
            return [], [Refused(name, f"{name}: {too_many}") for name in names]
        for incoming in files:
            outcome = self.accept(owner, incoming, lane)
            if isinstance(outcome, Accepted):
                accepted.append(outcome)
            else:
                refused.append(outcome)
        return accepted, refused

    def accept(self, owner: str, incoming: IncomingFile, lane: str = "") -> Accepted | Refused:
        """Check one file and, when acceptable, create its workflow, store it and queue it."""
        name = clean_filename(incoming.filename)
        # Read one byte past the limit: enough to know it is too large without holding more.
        data = incoming.stream.read(self.limit + 1)
        reason = check(name, incoming.content_type or "", data, self.limit)
        if reason is not None:
            log.info("upload refused owner=%s reason=%s", owner, reason)
            return Refused(name.display, reason)
        data, gps_removed = _strip_gps(data)
        workflow_id = uuid.uuid4().hex
        content_type = CANONICAL_TYPE[name.extension]
        object_name = f"originals/{owner}/{workflow_id}/{name.safe}"
        image = {
            "bucket": self.settings.bucket,
            "object": object_name,
            "filename": name.display,
            "content_type": content_type,
            "bytes": len(data),
            "gps_removed": gps_removed,
        }
        db = clients.firestore_client(self.settings.project)
        ref = workflow.workflow_ref(db, workflow_id)
        try:
            ref.create(workflow.new_document(workflow_id, owner, image, self.manifest), timeout=30)
        except Exception as exc:  # any failure here means nothing was created
            log.error("workflow %s not created: %s", workflow_id, type(exc).__name__)
            return Refused(name.display, f"{name.display} could not be saved. Please try again.")
        planned = self._planned(owner)
        if not self.settings.fault(faults.UPLOAD_NOT_STORED):
            try:
                if planned == "store_fails":
                    raise test_failures.InjectedTransientError("planned storage failure")
                blob = (
                    clients.storage_client(self.settings.project)
                    .bucket(self.settings.bucket)
                    .blob(object_name)
                )
                blob.upload_from_string(data, content_type=content_type, timeout=60)
            except Exception as exc:  # the workflow records the failure; the user is told
                log.error("workflow %s original not stored: %s", workflow_id, type(exc).__name__)
                self._withdraw(ref, None, "upload could not be stored")
                return Refused(
                    name.display, f"{name.display} could not be stored. Please try again.", retry=True
                )
        if not self.settings.fault(faults.UPLOAD_NOT_PUBLISHED):
            message = {
                "workflow_id": workflow_id,
                "owner": owner,
                "bucket": self.settings.bucket,
                "object": object_name,
            }
            attributes = {"workflow_id": workflow_id}
            if lane:
                attributes["lane"] = lane
            try:
                if planned == "publish_fails":
                    raise test_failures.InjectedTransientError("planned publish failure")
                clients.publish(
                    self.settings.project,
                    self.settings.topic(self.manifest.upload_topic, lane),
                    json.dumps(message).encode(),
                    **attributes,
                )
            except Exception as exc:  # the workflow records the failure; the user is told
                log.error("workflow %s not queued: %s", workflow_id, type(exc).__name__)
                self._withdraw(ref, object_name, "upload could not be queued")
                return Refused(
                    name.display,
                    f"{name.display} could not be queued for processing. Please try again.",
                    retry=True,
                )
        log.info(
            "upload accepted workflow=%s owner=%s bytes=%d gps_removed=%s lane=%s",
            workflow_id,
            owner,
            len(data),
            gps_removed,
            lane or "-",
        )
        return Accepted(name.display, workflow_id)

    def _planned(self, owner: str) -> str | None:
        """The test failure planned for this owner's uploads (only when the setting is on)."""
        if not self.settings.test_failures:
            return None
        try:
            mode = test_failures.dashboard_mode(clients.firestore_client(self.settings.project), owner)
        except test_failures.PlanError as exc:
            # Only a test writes plans; a bad one must show in its run, not pass unnoticed.
            log.error("test failure plan of %s ignored: %s", owner, exc)
            return None
        return mode.kind if mode else None

    def _withdraw(self, ref: firestore.DocumentReference, object_name: str | None, reason: str) -> None:
        """Delete an upload that will never be processed; if that fails, mark it failed instead."""
        try:
            if object_name:
                blob = (
                    clients.storage_client(self.settings.project)
                    .bucket(self.settings.bucket)
                    .blob(object_name)
                )
                blob.delete(timeout=30)
            ref.delete(timeout=30)
        except Exception as exc:  # a document left behind must at least say it failed
            log.error("workflow %s not withdrawn: %s", ref.id, type(exc).__name__)
            self._fail(ref, reason)
        else:
            log.info("workflow %s withdrawn: %s", ref.id, reason)

    def _fail(self, ref: firestore.DocumentReference, reason: str) -> None:
        """Mark the workflow failed by the dashboard itself, so it never sits pending forever."""
        at = workflow.now()
        try:
            ref.update(
                {
                    "status": workflow.Status.FAILED.value,
                    "reason": reason,
                    "failed_agent": "dashboard",
                    "updated_at": at,
                    "completed_at": at,
                    "events": firestore.ArrayUnion(
                        [
                            {
                                "at": at,
                                "agent": "dashboard",
                                "event": "failed",
                                "reason": reason,
                                "revision": self.settings.revision,
                            }
                        ]
                    ),
                },
                timeout=30,
            )
        except Exception as exc:  # nothing more can be done; say so in the log
            log.error("workflow %s could not be marked failed: %s", ref.id, type(exc).__name__)
