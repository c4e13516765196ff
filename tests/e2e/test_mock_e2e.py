"""Upload → storage → queue → worker → results, through the running local stack.

The stack is what `./manage.sh local start` runs (real redis-server, real
SeaweedFS, the API under uvicorn, a worker process, mock analysis). A generated
H.264 clip goes in; the results come back through the links the API gives.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.result_schemas import validate
from tests.e2e.conftest import LocalStack
from tests.synthetic import make_clip, truncated_copy

pytestmark = pytest.mark.e2e


def upload(api: str, path: Path, **fields: str) -> httpx.Response:
    with path.open("rb") as handle:
        files = {"file": (path.name, handle, "video/mp4")}
        return httpx.post(f"{api}/analyze", files=files, data=fields, headers=KEY, timeout=60)


def wait_for(api: str, job_id: str, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = httpx.get(f"{api}/jobs/{job_id}", headers=KEY).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout} s: {job}")


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def fetch(url: str, dest: Path) -> Path:
    with urllib.request.urlopen(url, timeout=30) as response:
        dest.write_bytes(response.read())
    return dest


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


# The stack's admin key, sent on every call (the stack runs with API keys, as it does by default).
KEY: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _stack_key(local_stack_info: LocalStack) -> None:
    KEY.update(local_stack_info.headers)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("e2e") / "dance.mp4", seconds=3, fps=25, size=(640, 360), audio=True)


def test_clip_goes_in_and_results_come_out(local_stack: str, source: Path, tmp_path: Path) -> None:
    accepted = upload(local_stack, source, profile="fast")
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]
    job = wait_for(local_stack, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    assert set(job["results"]) == {"annotated.mp4", "poses.json", "poses.csv", "metrics.json", "beats.json"}

    annotated = fetch(job["results"]["annotated.mp4"], tmp_path / "annotated.mp4")
    out, src = ffprobe(annotated), ffprobe(source)
    out_video = next(s for s in out["streams"] if s["codec_type"] == "video")
    src_video = next(s for s in src["streams"] if s["codec_type"] == "video")
    assert out_video["codec_name"] == "h264" and out_video["pix_fmt"] == "yuv420p"
    assert int(out_video["nb_read_frames"]) == int(src_video["nb_read_frames"]) == 75
    assert float(out_video["duration"]) == pytest.approx(float(src_video["duration"]), abs=0.01)
    assert any(s["codec_type"] == "audio" for s in out["streams"]), "the audio track was lost"

    poses = json.loads(fetch(job["results"]["poses.json"], tmp_path / "poses.json").read_text())
    validate("poses", poses)
    assert len(poses["frames"]) == 75 and 1 <= len(poses["tracks"]) <= 3
    validate("metrics", json.loads(fetch(job["results"]["metrics.json"], tmp_path / "m.json").read_text()))
    csv_head = fetch(job["results"]["poses.csv"], tmp_path / "poses.csv").read_text().splitlines()[0]
    assert csv_head == "frame,time,track,keypoint,x,y,score"


def test_manage_test_upload_shows_progress_and_links(local_stack_info: LocalStack, source: Path) -> None:
    done = local_stack_info.manage("local", "test-upload", str(source), timeout=180)
    output = done.stdout + done.stderr
    assert "succeeded" in output
    for name in ("annotated.mp4", "poses.json", "poses.csv", "metrics.json"):
        assert name in done.stdout


def test_manage_test_upload_with_a_reference_follows_the_comparison(
    local_stack_info: LocalStack, source: Path, tmp_path: Path
) -> None:
    """An operator's comparison from manage.sh: the teacher's clip, then the student's with --reference."""
    first = local_stack_info.manage("local", "test-upload", str(source), timeout=180)
    found = re.search(r"^job ([0-9a-f]{32})$", first.stdout, re.M)
    assert found, first.stdout
    attempt = make_clip(tmp_path / "attempt.mp4", seconds=4, fps=25, size=(640, 360), audio=True)
    done = local_stack_info.manage("local", "test-upload", str(attempt), "--reference", found[1], timeout=300)
    comparison_id = re.search(r"^comparison ([0-9a-f]{32})$", done.stdout, re.M)
    assert comparison_id, done.stdout

    # Both jobs' links, the comparison's last (name → link).
    links = dict(re.findall(r"^  (\S+\.\w+) +(https?://\S+)$", done.stdout, re.M))
    assert {"annotated.mp4", "beats.json", "comparison.json", "comparison.mp4"} <= set(links), done.stdout
    comparison = json.loads(fetch(links["comparison.json"], tmp_path / "comparison.json").read_text())
    validate("comparison", comparison)
    assert comparison["job_id"] == comparison_id[1] and comparison["reference"]["job_id"] == found[1]

    summary = re.search(r"^score (\d+\.\d)%, (not mirrored|mirrored) \(mirror auto\), (.*)$", done.stdout, re.M)
    assert summary, done.stdout
    assert summary[1] == f"{comparison['score'] * 100:.1f}"
    assert summary[2] == ("mirrored" if comparison["mirrored"] else "not mirrored")
    if comparison["worst_moments"]:
        worst = comparison["worst_moments"][0]
        assert summary[3].startswith(f"worst moment {worst['start']:.2f}-{worst['end']:.2f} s of the reference")
    else:
        assert summary[3] == "no worst moment"

    beats = json.loads(fetch(links["beats.json"], tmp_path / "beats.json").read_text())
    expected = f"tempo {beats['tempo_bpm']:.0f} BPM" if beats["tempo_bpm"] else f"no beats: {beats['skipped']}"
    assert re.search(rf"^{re.escape(expected)}", done.stdout, re.M), done.stdout


def test_bad_uploads_get_their_codes(local_stack: str, source: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert_error(upload(local_stack, empty), 422, "EMPTY_UPLOAD")

    text = tmp_path / "text.mp4"
    text.write_text("not a video\n" * 100)
    assert_error(upload(local_stack, text), 415, "UNSUPPORTED_MEDIA")

    truncated = truncated_copy(source, tmp_path / "truncated.mp4", keep=0.5)
    accepted = upload(local_stack, truncated)
    assert accepted.status_code == 202
    job = wait_for(local_stack, accepted.json()["job_id"], {"succeeded", "failed"})
    assert job["status"] == "failed" and job["error"]["code"] == "INVALID_VIDEO"
    assert job["results"] == {}


def test_oversized_upload(local_stack_info: LocalStack, tmp_path: Path, source: Path) -> None:
    limit_mb = int(local_stack_info.env["MAX_UPLOAD_MB"])
    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:
        handle.write(source.read_bytes())
        handle.write(b"\0" * ((limit_mb + 1) * 1024 * 1024))
    assert_error(upload(local_stack_info.base_url, big), 413, "UPLOAD_TOO_LARGE")


def test_unknown_job_cancel_finished_and_delete_running(local_stack: str, source: Path, tmp_path: Path) -> None:
    assert_error(httpx.get(f"{local_stack}/jobs/{'0' * 32}", headers=KEY), 404, "JOB_NOT_FOUND")

    finished = upload(local_stack, source).json()["job_id"]
    wait_for(local_stack, finished, {"succeeded"})
    assert_error(httpx.post(f"{local_stack}/jobs/{finished}/cancel", headers=KEY), 409, "JOB_ALREADY_FINISHED")

    long_clip = make_clip(tmp_path / "long.mp4", seconds=40, fps=30, size=(640, 360))
    running = upload(local_stack, long_clip).json()["job_id"]
    wait_for(local_stack, running, {"running"})
    assert_error(httpx.delete(f"{local_stack}/jobs/{running}", headers=KEY), 409, "JOB_RUNNING")
    assert httpx.post(f"{local_stack}/jobs/{running}/cancel", headers=KEY).json()["status"] == "canceled"
    # The worker notices within seconds and is free for the next job.
    nxt = upload(local_stack, source).json()["job_id"]
    assert wait_for(local_stack, nxt, {"succeeded"}, timeout=60)["status"] == "succeeded"
    assert httpx.delete(f"{local_stack}/jobs/{running}", headers=KEY).status_code == 204
    assert_error(httpx.get(f"{local_stack}/jobs/{running}", headers=KEY), 404, "JOB_NOT_FOUND")


def test_the_local_stack_needs_keys_and_keeps_each_keys_jobs_apart(local_stack_info: LocalStack, source: Path) -> None:
    api = local_stack_info.base_url
    assert httpx.get(f"{api}/jobs").status_code == 401
    # `status` shows the stack's admin key; `keys create` makes another, printed once.
    assert local_stack_info.headers["Authorization"].split()[1] in local_stack_info.manage("local", "status").stdout
    made = json.loads(local_stack_info.manage("local", "keys", "create", "dancer", "--json").stdout)
    dancer = {"Authorization": f"Bearer {made['key']}"}
    theirs = upload(api, source).json()["job_id"]  # the admin key's
    with source.open("rb") as handle:
        mine = httpx.post(f"{api}/analyze", files={"file": ("mine.mp4", handle)}, headers=dancer, timeout=60)
    assert mine.status_code == 202
    assert [j["job_id"] for j in httpx.get(f"{api}/jobs", headers=dancer).json()["jobs"]] == [mine.json()["job_id"]]
    assert httpx.get(f"{api}/jobs/{theirs}", headers=dancer).status_code == 404
    assert made["key_id"] in local_stack_info.manage("local", "keys", "list").stdout
    local_stack_info.manage("local", "keys", "revoke", made["key_id"])
    assert httpx.get(f"{api}/jobs", headers=dancer).status_code == 401
