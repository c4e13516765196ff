"""Comparison jobs end to end: the API, RQ and the worker on real Redis and S3, in mock mode.

`POST /compare` of two succeeded analyses, and `POST /analyze` with `reference_job_id`
(the comparison follows the analysis and runs when it ends); who may compare what;
what a comparison of a video with itself must give; and what happens to a comparison
whose attempt fails or whose worker never queued it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import av
import pytest
from fastapi.testclient import TestClient
from rq.job import Job
from rq.serializers import JSONSerializer

from backend.main import create_app
from shared.jobs import JobStatus
from shared.queue import get_queue
from shared.result_schemas import validate
from shared.settings import Settings
from shared.storage import Storage
from tests.auth import bearer, keyed, make_key
from tests.service.test_worker import run_worker_once
from tests.synthetic import make_clip
from worker import tasks
from worker.analysis.mock import MockAnalyzer
from worker.context import build_context


@pytest.fixture
def clips(tmp_path: Path) -> tuple[Path, Path]:
    return (
        make_clip(tmp_path / "teacher.mp4", seconds=4, fps=15, audio=True),
        make_clip(tmp_path / "student.mp4", seconds=3, fps=15, size=(352, 240)),
    )


def upload(api: TestClient, clip: Path, headers: dict[str, str] | None = None, **fields: str) -> dict[str, Any]:
    response = api.post(
        "/analyze", files={"file": (clip.name, clip.read_bytes(), "video/mp4")}, data=fields, headers=headers or {}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def fetch_result(api: TestClient, job: dict[str, Any], name: str, headers: dict[str, str] | None = None) -> bytes:
    assert name in job["results"]
    response = api.get(f"/jobs/{job['job_id']}/results/{name}", headers=headers or {})
    assert response.status_code == 200, response.text
    return response.content


def analysed(api: TestClient, settings: Settings, *clips: Path) -> list[str]:
    ids = [upload(api, clip)["job_id"] for clip in clips]
    run_worker_once(settings)
    for job_id in ids:
        assert api.get(f"/jobs/{job_id}").json()["status"] == "succeeded"
    return ids


def test_a_video_compared_with_itself_matches_everywhere(service_settings: Settings, clips: tuple[Path, Path]) -> None:
    """Mock mode gives the same poses for the same video: the alignment must be the identity, the score ~1."""
    with TestClient(create_app(service_settings)) as api:
        (teacher,) = analysed(api, service_settings, clips[0])
        accepted = api.post("/compare", json={"reference_job_id": teacher, "attempt_job_id": teacher, "mirror": "off"})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        assert accepted.headers["location"].endswith(f"/jobs/{job_id}")
        queued = api.get(f"/jobs/{job_id}").json()
        assert queued["kind"] == "comparison" and queued["status"] == "queued"
        assert queued["comparison"]["reference_job_id"] == teacher and queued["comparison"]["mirror"] == "off"

        run_worker_once(service_settings)

        job = api.get(f"/jobs/{job_id}").json()
        assert job["status"] == "succeeded", job["error"]
        assert set(job["results"]) == {"comparison.json", "comparison.mp4"}
        document = json.loads(fetch_result(api, job, "comparison.json"))
        validate("comparison", document)
        assert document["score"] > 0.99
        assert document["mirrored"] is False
        series = document["series"]
        drift = max(abs(a - t) for a, t in zip(series["attempt_time"], series["time"], strict=True) if a is not None)
        assert drift < 1 / 15 + 1e-6  # within a frame of the identity
        # Listed like any job, and the list says what it is.
        listed = {j["job_id"]: j for j in api.get("/jobs").json()["jobs"]}
        assert listed[job_id]["kind"] == "comparison" and listed[teacher]["kind"] == "analysis"


def test_a_comparison_renders_the_aligned_pair_on_the_references_timeline(
    service_settings: Settings, clips: tuple[Path, Path], tmp_path: Path
) -> None:
    with TestClient(create_app(service_settings)) as api:
        teacher, student = analysed(api, service_settings, *clips)
        job_id = api.post("/compare", json={"reference_job_id": teacher, "attempt_job_id": student}).json()["job_id"]
        run_worker_once(service_settings)
        job = api.get(f"/jobs/{job_id}").json()
        assert job["status"] == "succeeded", job["error"]
        assert job["progress"] == 1.0 and job["stage"] == "done"
        document = json.loads(fetch_result(api, job, "comparison.json"))
        validate("comparison", document)
        assert document["reference"]["job_id"] == teacher and document["attempt"]["job_id"] == student
        assert document["mirror"] == "auto" and document["other_orientation_score"] is not None
        assert 0 <= document["score"] <= 1 and document["worst_moments"]

        video = tmp_path / "comparison.mp4"
        video.write_bytes(fetch_result(api, job, "comparison.mp4"))
        reference = tmp_path / "reference.mp4"
        reference.write_bytes(fetch_result(api, api.get(f"/jobs/{teacher}").json(), "annotated.mp4"))
        with av.open(str(video)) as out, av.open(str(reference)) as ref:
            stream = out.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
            assert stream.codec_context.width % 2 == 0 and stream.codec_context.height % 2 == 0
            out_frames = sum(1 for _ in out.decode(video=0))
            ref_frames = sum(1 for _ in ref.decode(video=0))
        assert out_frames == ref_frames  # one output frame per reference frame: seek by reference seconds


def test_who_may_compare_what(service_settings: Settings, clips: tuple[Path, Path]) -> None:
    settings = keyed(service_settings)
    coach, other = make_key(settings, "coach"), make_key(settings, "other")
    with TestClient(create_app(settings)) as api:
        mine = upload(api, clips[0], bearer(coach))["job_id"]
        theirs = upload(api, clips[1], bearer(other))["job_id"]

        def compare(reference: str, attempt: str, key: str = coach, **extra: Any) -> Any:
            body = {"reference_job_id": reference, "attempt_job_id": attempt, **extra}
            return api.post("/compare", json=body, headers=bearer(key))

        # Not finished yet: 409, with the status.
        refused = compare(mine, mine)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "JOB_NOT_READY"
        assert refused.json()["error"]["details"]["status"] == "queued"
        run_worker_once(settings)

        # Another key's job does not exist for the caller, either way round.
        for reference, attempt in ((mine, theirs), (theirs, mine)):
            response = compare(reference, attempt)
            assert response.status_code == 404 and response.json()["error"]["code"] == "JOB_NOT_FOUND"
        unknown = compare(mine, "0" * 32)
        assert unknown.status_code == 404 and unknown.json()["error"]["details"]["role"] == "attempt"
        # No key: 401; a malformed body: 422; never a 5xx.
        assert api.post("/compare", json={"reference_job_id": mine, "attempt_job_id": mine}).status_code == 401
        for body in ({"reference_job_id": mine}, {"reference_job_id": "x", "attempt_job_id": mine},
                     {"reference_job_id": mine, "attempt_job_id": mine, "mirror": "sideways"},
                     {"reference_job_id": mine, "attempt_job_id": mine, "attempt_track_id": 0}):  # fmt: skip
            response = api.post("/compare", json=body, headers=bearer(coach))
            assert response.status_code == 422 and response.json()["error"]["code"] == "VALIDATION_ERROR", body

        accepted = compare(mine, mine)
        assert accepted.status_code == 202
        comparison = accepted.json()["job_id"]
        # A comparison is not an analysis: it cannot be compared again.
        run_worker_once(settings)
        nested = compare(comparison, mine)
        assert nested.status_code == 422 and nested.json()["error"]["code"] == "NOT_AN_ANALYSIS"
        # Owned like any job: the other key cannot see it, the coach lists it.
        assert api.get(f"/jobs/{comparison}", headers=bearer(other)).status_code == 404
        assert comparison in {j["job_id"] for j in api.get("/jobs", headers=bearer(coach)).json()["jobs"]}
        assert comparison not in {j["job_id"] for j in api.get("/jobs", headers=bearer(other)).json()["jobs"]}
        # An admin key sees every job, so it may compare anyone's; the comparison is the admin's.
        admin = make_key(settings, "operator", admin=True)
        by_admin = compare(mine, theirs, admin)
        assert by_admin.status_code == 202, by_admin.text
        run_worker_once(settings)
        job = api.get(f"/jobs/{by_admin.json()['job_id']}", headers=bearer(admin)).json()
        assert job["status"] == "succeeded", job["error"]
        assert api.get(f"/jobs/{job['job_id']}", headers=bearer(coach)).status_code == 404


def test_an_upload_with_a_reference_is_compared_when_its_analysis_ends(
    service_settings: Settings, clips: tuple[Path, Path]
) -> None:
    with TestClient(create_app(service_settings)) as api:
        (teacher,) = analysed(api, service_settings, clips[0])
        accepted = upload(api, clips[1], reference_job_id=teacher, mirror="on")
        attempt, comparison = accepted["job_id"], accepted["comparison_job_id"]
        assert accepted["comparison_status_url"].endswith(f"/jobs/{comparison}")
        assert api.get(f"/jobs/{attempt}").json()["comparison_job_id"] == comparison
        waiting = api.get(f"/jobs/{comparison}").json()
        assert waiting["status"] == "queued"
        assert waiting["comparison"] == {
            "reference_job_id": teacher, "attempt_job_id": attempt, "mirror": "on",
            "reference_track_id": None, "attempt_track_id": None,
        }  # fmt: skip
        # Not in RQ yet: a worker must not pick it up before the analysis it compares has ended.
        redis = api.app.state.redis  # type: ignore[attr-defined]
        assert comparison not in get_queue(service_settings, redis).get_job_ids()

        run_worker_once(service_settings)  # runs the analysis, which queues the comparison, which runs too

        job = api.get(f"/jobs/{comparison}").json()
        assert job["status"] == "succeeded", job["error"]
        document = json.loads(fetch_result(api, job, "comparison.json"))
        assert document["attempt"]["job_id"] == attempt and document["mirrored"] is True


def test_a_comparison_of_an_attempt_that_failed_fails_with_input_unavailable(
    service_settings: Settings, clips: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app(service_settings)) as api:
        (teacher,) = analysed(api, service_settings, clips[0])
        monkeypatch.setattr(tasks, "budget_seconds", lambda settings, duration: 0)  # the next analysis times out
        accepted = upload(api, clips[1], reference_job_id=teacher)
        run_worker_once(service_settings)
        assert api.get(f"/jobs/{accepted['job_id']}").json()["error"]["code"] == "JOB_TIMEOUT"
        job = api.get(f"/jobs/{accepted['comparison_job_id']}").json()
        assert job["status"] == "failed"
        assert job["error"]["code"] == "INPUT_UNAVAILABLE"
        assert "JOB_TIMEOUT" in job["error"]["message"] and job["error"]["details"]["role"] == "attempt"
        assert job["results"] == {}


def test_the_reconciler_queues_a_waiting_comparison_only_once_its_analysis_has_ended(
    service_settings: Settings, clips: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker running the analysis died before it could queue the comparison: the sweep does it."""
    monkeypatch.setattr("shared.reconcile.ENQUEUE_GRACE_SECONDS", 0.0)
    with TestClient(create_app(service_settings)) as api:
        (teacher,) = analysed(api, service_settings, clips[0])
        accepted = upload(api, clips[1], reference_job_id=teacher)
        attempt, comparison = accepted["job_id"], accepted["comparison_job_id"]
        context = build_context(service_settings, analyzer=MockAnalyzer())
        queue = context.queue

        assert context.reconciler.sweep().requeued == []  # the analysis is still queued: the comparison waits
        assert context.store.start(attempt, worker="somebody")
        assert context.reconciler.sweep().requeued == []  # ...and still while it runs

        # The analysis ends (here: canceled) and nobody queued the comparison.
        assert context.store.cancel(attempt, actor="test")
        time.sleep(0.01)
        assert context.reconciler.sweep().requeued == [comparison]
        assert Job.fetch(comparison, connection=queue.connection, serializer=JSONSerializer).description == (
            f"comparison {comparison}"
        )
        run_worker_once(service_settings)
        job = api.get(f"/jobs/{comparison}").json()
        assert job["status"] == "failed" and job["error"]["code"] == "INPUT_UNAVAILABLE"
        assert context.store.get(comparison) is not None
        assert context.store.get(comparison).status is JobStatus.FAILED  # type: ignore[union-attr]


def test_an_upload_with_a_reference_that_cannot_be_compared_leaves_nothing_behind(
    service_settings: Settings, clips: tuple[Path, Path]
) -> None:
    """The reference is checked once the upload is in: a refusal removes the upload, and no job stays."""
    with TestClient(create_app(service_settings)) as api:
        (teacher,) = analysed(api, service_settings, clips[0])
        queued = upload(api, clips[0])["job_id"]  # not analysed yet
        before = Storage(service_settings).list_keys("uploads/")
        cases = {
            "0" * 32: (404, "JOB_NOT_FOUND"),
            queued: (409, "JOB_NOT_READY"),
            "not-a-job": (422, "VALIDATION_ERROR"),
        }
        for reference, (status, code) in cases.items():
            response = api.post(
                "/analyze",
                files={"file": (clips[1].name, clips[1].read_bytes(), "video/mp4")},
                data={"reference_job_id": reference},
            )
            assert response.status_code == status and response.json()["error"]["code"] == code, response.text
        bad_mirror = api.post(
            "/analyze",
            files={"file": (clips[1].name, clips[1].read_bytes(), "video/mp4")},
            data={"reference_job_id": teacher, "mirror": "sideways"},
        )
        assert bad_mirror.status_code == 422 and bad_mirror.json()["error"]["details"]["field"] == "mirror"
        assert Storage(service_settings).list_keys("uploads/") == before
        assert {j["job_id"] for j in api.get("/jobs").json()["jobs"]} == {teacher, queued}


@pytest.mark.parametrize("ending", ["cancel", "delete"])
def test_a_queued_analysis_canceled_or_deleted_lets_its_comparison_fail_at_once(
    service_settings: Settings, clips: tuple[Path, Path], ending: str
) -> None:
    """The analysis never runs, so no worker queues its comparison: the API does, and it fails straight away
    instead of waiting for the reconciler's next sweep."""
    with TestClient(create_app(service_settings)) as api:
        (teacher,) = analysed(api, service_settings, clips[0])
        accepted = upload(api, clips[1], reference_job_id=teacher)
        attempt, comparison = accepted["job_id"], accepted["comparison_job_id"]
        redis = api.app.state.redis  # type: ignore[attr-defined]
        queue = get_queue(service_settings, redis)
        assert comparison not in queue.get_job_ids()
        if ending == "cancel":
            assert api.post(f"/jobs/{attempt}/cancel").status_code == 200
        else:
            assert api.delete(f"/jobs/{attempt}").status_code == 204
        assert comparison in queue.get_job_ids()
        run_worker_once(service_settings)
        job = api.get(f"/jobs/{comparison}").json()
        assert job["status"] == "failed" and job["error"]["code"] == "INPUT_UNAVAILABLE"
        assert job["error"]["details"]["role"] == "attempt"
