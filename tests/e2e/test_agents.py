"""What each agent wrote, judged by independent oracles computed from the bytes the test uploaded.

Uploads go through the JSON API (the browser adds nothing here). The witnesses are the workflow
document (admin read), the API's and the page's view of it, and the objects in the bucket; the
truth comes from `oracles/` (exiftool, the container's own header, numpy), never from the system's code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import allure
import pytest
from google.cloud import storage
from pipeline_checks import api_agrees, completed, every_agent_once

from fixtures import promises
from fixtures.firestore import WatchResult, WorkflowWatcher
from fixtures.images import CAMERA_MAKE, CAMERA_MODEL, GPS_LATITUDE, GPS_LONGITUDE, ImageFile, MakeImage
from fixtures.reporting import labels
from fixtures.uploads import HTTP_TIMEOUT_SECONDS, ApiSession, accepted_ids
from fixtures.users import TestUser
from imageflow.manifest import Manifest
from oracles import analysis, exif, exiftool, privacy, thumbnailer, validator

POSITION = privacy.Position(GPS_LATITUDE, GPS_LONGITUDE)
# Every accepted kind of image the pipeline promises to process (refused and at-the-limit kinds are
# the contract scenarios'): formats, EXIF orientations, colour modes, transparency, animation,
# metadata containers, real photographs.
KINDS = [
    "jpeg_with_exif_gps",
    "png_with_exif_gps",
    "webp_with_exif_gps",
    "plain_jpeg",
    "png_with_alpha",
    "webp",
    "gif",
    "large_jpeg",
    "tiny_png",
    *(f"jpeg_orientation_{n}" for n in (1, 2, 3, 4, 5, 7, 8)),
    "cmyk_jpeg",
    "png_16bit",
    "palette_png_transparent",
    "animated_webp",
    "progressive_jpeg",
    "greyscale_alpha_png",
    "jpeg_with_xmp_gps",
    "png_with_xmp_gps",
    "gif_with_xmp_gps",
    "jpeg_with_iptc",
    "photo_grace_hopper",
    "photo_minduka",
]

NEEDS_EXIFTOOL = pytest.mark.skipif(not exiftool.available(), reason=exiftool.INSTALL_HINT)


@dataclass(frozen=True)
class Processed:
    """One upload after the pipeline ran: who uploaded what, through which session, and the watch result."""

    user: TestUser
    session: ApiSession
    image: ImageFile
    result: WatchResult

    @property
    def workflow_id(self) -> str:
        """The upload's workflow id."""
        return self.result.workflow_id

    @property
    def document(self) -> dict[str, Any]:
        """The final workflow document."""
        return self.result.document or {}


Process = Callable[[str], Processed]


@pytest.fixture
def process(
    new_user: TestUser,
    api_session: Callable[[TestUser], ApiSession],
    make_image: MakeImage,
    workflow_watcher: WorkflowWatcher,
    pipeline_manifest: Manifest,
) -> Process:
    """Factory: upload one generated image as a new user; every agent ran once, the API says so too."""
    session = api_session(new_user)

    def run(kind: str) -> Processed:
        image = make_image(kind)
        response = session.upload([image.multipart()])
        assert response.status_code == 201, f"upload answered {response.status_code}: {response.text[:300]}"
        workflow_id = accepted_ids(response)[image.filename]
        result = completed(workflow_watcher, workflow_id)
        every_agent_once(result, pipeline_manifest)
        api_agrees(result, session)
        return Processed(new_user, session, image, result)

    return run


def _download(bucket: storage.Bucket, name: str) -> bytes:
    blob = bucket.blob(name)
    assert blob.exists(), f"object {name} is not in bucket {bucket.name}"
    return bytes(blob.download_as_bytes())


def _verdict(done: Processed, agent: str, problems: list[str]) -> None:
    """Fail naming the agent, the workflow, the image and every difference from the oracle."""
    assert not problems, (
        f"{agent} output of workflow {done.workflow_id} ({done.image.kind}) is not true to the upload: "
        + "; ".join(problems)
    )


def check_validator(done: Processed, stored: bytes) -> None:
    """The validator's facts are the stored object's; the stored original is the upload (minus GPS)."""
    with allure.step(f"validator: facts recomputed from the stored original of {done.workflow_id}"):
        image = done.document["image"]
        problems = validator.check(stored, done.result.output("validator"))
        problems += validator.check_stored_original(done.image.data, stored, image.get("gps_removed") is True)
        if image.get("bytes") != len(stored):
            problems.append(
                f"the document says {image.get('bytes')} bytes, the stored original has {len(stored)}"
            )
        _verdict(done, "validator", problems)


def check_thumbnail(done: Processed, bucket: storage.Bucket) -> bytes:
    """The thumbnail in storage is the upload's, upright, of the promised size, format and content."""
    with allure.step(f"thumbnailer: thumbnail of {done.workflow_id} against a reference downscale"):
        output = done.result.output("thumbnailer")
        extension = "png" if output.get("format") == "PNG" else "jpg"
        expected_name = f"{promises.THUMBNAILS_PREFIX}/{done.user.uid}/{done.workflow_id}.{extension}"
        problems = [] if output.get("object") == expected_name else [f"object {output.get('object')!r}"]
        thumbnail = _download(bucket, str(output.get("object")))
        _verdict(done, "thumbnailer", problems + thumbnailer.check(done.image.data, thumbnail, output))
        return thumbnail


def check_exif(done: Processed) -> None:
    """The exif agent recorded what exiftool reads in the upload."""
    with allure.step(f"exif: fields of {done.workflow_id} against exiftool"):
        _verdict(done, "exif", exif.check(done.image.data, done.result.output("exif")))


def check_analysis(done: Processed) -> None:
    """The analysis values are the upload's, within the oracle's stated tolerances."""
    with allure.step(f"analysis: values of {done.workflow_id} recomputed with numpy"):
        _verdict(done, "analysis", analysis.check(done.image.data, done.result.output("analysis")))


def check_privacy(done: Processed, stored: bytes, thumbnail: bytes) -> None:
    """No location anywhere: stored original, thumbnail, document, API answer, workflow page."""
    with allure.step(f"privacy: no location in anything {done.workflow_id} left behind"):
        located = bool(privacy.blob_leaks(done.image.data, POSITION))
        api = done.session.workflow(done.workflow_id)
        page = done.session.http.get(
            f"{done.session.base}/workflows/{done.workflow_id}", timeout=HTTP_TIMEOUT_SECONDS
        )
        assert api.status_code == 200, f"GET /api/workflows/{done.workflow_id} answered {api.status_code}"
        assert page.status_code == 200, f"GET /workflows/{done.workflow_id} answered {page.status_code}"
        leaks = [f"stored original: {leak}" for leak in privacy.blob_leaks(stored, POSITION)]
        leaks += [f"thumbnail: {leak}" for leak in privacy.blob_leaks(thumbnail, POSITION)]
        ids = (done.user.uid, done.workflow_id)
        for view, document in (("document", done.document), ("API", api.json())):
            found = privacy.document_leaks(document, POSITION, identifiers=ids)
            leaks += [f"{view}: {leak}" for leak in found]
        leaks += privacy.text_leaks(page.text, POSITION, "workflow page", identifiers=ids)
        if done.document["image"].get("gps_removed") is not located:
            leaks.append(
                f"gps_removed is {done.document['image'].get('gps_removed')!r}, the upload located: {located}"
            )
        _verdict(done, "dashboard (location privacy)", leaks)


@NEEDS_EXIFTOOL
@pytest.mark.agent("validator")
@pytest.mark.agent("thumbnailer")
@pytest.mark.agent("exif")
@pytest.mark.agent("analysis")
@labels(
    "Agents",
    "every agent's output is true to the upload (independent oracles)",
    allure.severity_level.BLOCKER,
)
@pytest.mark.parametrize("kind", KINDS)
def test_every_agent_output_is_true_to_the_upload(
    kind: str, process: Process, upload_bucket: storage.Bucket
) -> None:
    done = process(kind)
    stored = _download(upload_bucket, done.document["image"]["object"])
    check_validator(done, stored)
    thumbnail = check_thumbnail(done, upload_bucket)
    check_exif(done)
    check_analysis(done)
    check_privacy(done, stored, thumbnail)


@pytest.mark.agent("exif")
@labels("Agents", "exif: the fixture's own camera, date and orientation", allure.severity_level.CRITICAL)
def test_exif_reads_the_camera_the_fixture_wrote(process: Process) -> None:
    # The fixture's constants are a third witness beside exiftool: a reader that agrees with the
    # agent but not with what was written would still be caught here.
    output = process("jpeg_with_exif_gps").result.output("exif")
    assert output["camera"] == f"{CAMERA_MAKE} {CAMERA_MODEL}", output
    assert output["taken_at"] == "2024-05-17T14:32:09", output
    assert output["orientation"] == 6, output


@pytest.mark.agent("analysis")
@labels("Agents", "analysis: values match a known image", allure.severity_level.NORMAL)
def test_analysis_of_single_red_pixel_is_red_with_matching_brightness(process: Process) -> None:
    output = process("tiny_png").result.output("analysis")
    assert [str(c).lower() for c in output["dominant_colors"]] == ["#ff0000"]
    # Luminance of pure red (ITU-R 601-2, as Pillow's "L" conversion): 0.299 * 255.
    assert abs(float(output["brightness"]) - 76.2) < 1.5, output["brightness"]
    assert output["phash"] == "0" * 16, output["phash"]


@pytest.mark.agent("finalizer")
@labels("Agents", "finalizer: completes only after every dependency", allure.severity_level.CRITICAL)
def test_finalizer_completes_only_after_every_dependency_finished(
    process: Process, pipeline_manifest: Manifest
) -> None:
    done = process("webp")
    finalizer = pipeline_manifest.agent("finalizer")
    assert sorted(done.result.output("finalizer")["completed_steps"]) == sorted(finalizer.depends_on)
    finished = done.result.step("finalizer")["finished_at"]
    late = {
        name: done.result.step(name)["finished_at"]
        for name in finalizer.depends_on
        if done.result.step(name)["finished_at"] > finished
    }
    assert not late, f"the finalizer finished at {finished}, before its dependencies: {late}"
    assert done.document["completed_at"] >= max(
        done.result.step(n)["finished_at"] for n in finalizer.depends_on
    )
