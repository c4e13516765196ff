"""The web page in a real headless Chromium against a live stack in mock mode.

upload_flow.mjs does what a dancer would do (wrong file, upload, watch, view
the results, delete) and reports what the page showed; the assertions are here.
The screenshot lands in tests/artifacts/web-results.png (git-ignored).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.clips import write_clip
from tests.synthetic import moving_frames

if TYPE_CHECKING:
    from tests.browser.conftest import BrowserTools, Stack

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SIZE = (640, 360)
FPS = 15.0
FRAMES = 60  # 4 s


def test_upload_follow_and_view_results_in_a_browser(
    browser_tools: BrowserTools, web_stack: Stack, tmp_path: Path
) -> None:
    clip = tmp_path / "rehearsal.mp4"
    write_clip(moving_frames(FRAMES, SIZE), clip, FPS, audio=True)
    source_duration = FRAMES / FPS
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("these are my dance notes, not a video\n" * 50)
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "web-results.png"
    screenshot.unlink(missing_ok=True)

    env = {
        **os.environ,
        "API_URL": web_stack.api_url,
        "CLIP_PATH": str(clip),
        "NOT_A_VIDEO_PATH": str(not_a_video),
        "SCREENSHOT_PATH": str(screenshot),
        "CHROMIUM": browser_tools.chromium,
        # About 2.5 s of upload, so the progress bar has time to move.
        "UPLOAD_BYTES_PER_SECOND": str(max(clip.stat().st_size // 2.5, 4096)),
    }
    done = subprocess.run(
        [browser_tools.node, "upload_flow.mjs"],
        cwd=browser_tools.workdir, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"the browser script printed no report:\n{done.stdout}\n{done.stderr}\n{web_stack.log_tail()}")
    (ARTIFACTS / "web-report.json").write_text(json.dumps(report, indent=2))
    context = f"\nsteps: {report['steps']}\n{done.stderr[-3000:]}\n{web_stack.log_tail()}"
    assert done.returncode == 0 and "failure" not in report, f"{report.get('failure')}{context}"

    # The page: title, the mode from GET /, and nothing broken on the way.
    assert report["title"] == "Dance analysis"
    assert report["modeBadge"] == "Mock analysis"
    assert report["pageErrors"] == []
    assert report["failedRequests"] == []
    assert not [line for line in report["console"] if "error" in line.lower() and "415" not in line], report["console"]

    # A wrong file is refused in plain words, its code shown alongside.
    assert "The upload failed" in report["wrongFileMessage"]
    assert "UNSUPPORTED_MEDIA" in report["wrongFileMessage"]

    # The upload bar moved through values below 100 % before it was full.
    upload = report["seen"]["upload"]
    assert upload[-1] == 1, upload
    assert any(0 < value < 1 for value in upload), f"no partial upload progress was shown: {upload}"

    # The job was followed live (Server-Sent Events), through its stages, to success.
    assert f"GET /jobs/{report['jobId']}/events" in report["requests"]
    assert report["finalStatus"] == "succeeded", report["jobError"]
    seen = report["seen"]
    assert seen["statuses"][-1] == "succeeded"
    assert "running" in seen["statuses"], seen["statuses"]
    partial = [value for value in seen["jobProgress"] if 0 < value < 1]
    assert len(partial) >= 2, f"job progress seen: {seen['jobProgress']}"
    assert seen["jobProgress"] == sorted(seen["jobProgress"]), "the bar never goes back"
    assert len(set(seen["stages"])) >= 3, seen["stages"]

    # The annotated video plays through the API (same origin, Range requests), at the source's size and length.
    video = report["video"]
    assert video["src"] == f"{web_stack.api_url}/jobs/{report['jobId']}/results/annotated.mp4"
    assert video["error"] is None
    assert video["readyState"] >= 2
    assert (video["videoWidth"], video["videoHeight"]) == SIZE
    assert abs(video["duration"] - source_duration) < 0.2, video["duration"]
    assert video["playedTo"] > 0.3, "the video did not play"

    # One chart per dancer, drawn (axes + coloured joint lines), and its cursor follows the video.
    assert report["dancers"], "no dancer in the summary"
    assert len(report["charts"]) == len(report["dancers"])
    for chart in report["charts"]:
        assert chart["inkedPixels"] > 0.01 * chart["width"] * chart["height"], chart
        assert chart["colors"] >= 4, chart
    assert report["cursorPixelsChanged"] > 50

    # The summary names each dancer with time in view, energy, angle and speed tables.
    for dancer in report["dancers"]:
        assert dancer["heading"] == f"Dancer {dancer['trackId']}"
        assert "In view" in dancer["facts"] and "Movement energy" in dancer["facts"]
        assert dancer["angleRows"] >= 4 and dancer["speedRows"] >= 2, dancer
    assert "found" in report["resultsMessage"]

    # A download link for every result file, each one answering.
    assert sorted(link["text"] for link in report["downloads"]) == sorted(
        ["annotated.mp4", "poses.json", "poses.csv", "metrics.json"]
    )
    assert set(report["downloadStatus"].values()) == {200}, report["downloadStatus"]

    # Delete removes it from the list and from the API.
    assert report["resultsHiddenAfterDelete"] is True
    assert report["afterDelete"] == 404

    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
