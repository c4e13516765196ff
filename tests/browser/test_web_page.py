"""The web page in a real headless Chromium against a live stack in mock mode.

upload_flow.mjs does what a dancer would do (the key form, a wrong file, upload, watch, view the
results, reload, delete) and reports what the page showed; the assertions are here. It runs
three times: with API keys and result links through the API (signed `?token=` links), with
API keys and presigned storage links, and on an open API (no key asked for).
The screenshots land in tests/artifacts/web-results-<variant>*.png (git-ignored).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from shared.apikeys import ApiKeyStore, key_id_of
from shared.keys import RedisKeys
from shared.settings import Settings
from tests.auth import keyed, make_key
from tests.clips import write_clip
from tests.synthetic import moving_frames

if TYPE_CHECKING:
    from tests.browser.conftest import BrowserTools, Stack

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SIZE = (640, 360)
FPS = 15.0
FRAMES = 60  # 4 s
KEY_NAME = "rehearsal-laptop"


def keys_with_api_links(settings: Settings) -> Settings:
    """Keys, and no public storage endpoint: result links go through the API, signed per file."""
    return keyed(settings).model_copy(update={"s3_public_endpoint_url": ""})


def keys_with_presigned_links(settings: Settings) -> Settings:
    return keyed(settings)


def open_api(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_auth": "open"})


VARIANTS = {"keys-api-links": keys_with_api_links, "keys-presigned": keys_with_presigned_links, "open": open_api}


def revoke(settings: Settings, key: str) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        key_id = key_id_of(key)
        assert key_id and ApiKeyStore(client, RedisKeys(settings.key_prefix)).revoke(key_id) is not None
    finally:
        client.close()


def run_flow(
    tools: BrowserTools, env: dict[str, str], answers: dict[str, Callable[[], None]], timeout: float = 300
) -> tuple[int, str, str]:
    """Run upload_flow.mjs; when it writes `@@ <request>` on stderr, do answers[request] and tell it `done`."""
    process = subprocess.Popen(
        [tools.node, "upload_flow.mjs"], cwd=tools.workdir, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin and process.stdout and process.stderr
    out: list[str] = []
    err: list[str] = []

    def read_stdout() -> None:
        assert process.stdout
        out.append(process.stdout.read())

    def read_stderr() -> None:
        assert process.stderr and process.stdin
        for line in process.stderr:
            err.append(line)
            if line.startswith("@@ "):
                request = line[3:].strip()
                try:
                    answers[request]()
                    reply = "done"
                except Exception as exc:  # the flow reports it: the test fails with its report
                    reply = f"failed: {exc!r}"
                process.stdin.write(reply + "\n")
                process.stdin.flush()

    readers = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    for reader in readers:
        reader.join(10)
    return process.returncode, "".join(out), "".join(err)


@pytest.mark.parametrize("web_stack", list(VARIANTS.values()), ids=list(VARIANTS), indirect=True)
def test_upload_follow_and_view_results_in_a_browser(
    browser_tools: BrowserTools, web_stack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    variant = request.node.callspec.id
    settings = web_stack.settings
    keys = settings.api_auth == "keys"
    api_key = make_key(settings, KEY_NAME) if keys else ""
    # The right key id with a wrong secret: the server must check the whole key.
    key_prefix = f"dak_{key_id_of(api_key)}_" if keys else ""
    wrong_key = key_prefix + "x" * 43 if keys else ""
    clip = tmp_path / "rehearsal.mp4"
    write_clip(moving_frames(FRAMES, SIZE), clip, FPS, audio=True)
    source_duration = FRAMES / FPS
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("these are my dance notes, not a video\n" * 50)
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / f"web-results-{variant}.png"
    screenshot.unlink(missing_ok=True)

    env = {
        **os.environ,
        "API_URL": web_stack.api_url,
        "API_KEY": api_key,
        "WRONG_KEY": wrong_key,
        "CLIP_PATH": str(clip),
        "NOT_A_VIDEO_PATH": str(not_a_video),
        "SCREENSHOT_PATH": str(screenshot),
        "CHROMIUM": browser_tools.chromium,
        # About 2.5 s of upload, so the progress bar has time to move.
        "UPLOAD_BYTES_PER_SECOND": str(max(clip.stat().st_size // 2.5, 4096)),
    }
    returncode, stdout, stderr = run_flow(browser_tools, env, {"revoke": lambda: revoke(settings, api_key)})
    try:
        report: dict[str, Any] = json.loads(stdout)
    except json.JSONDecodeError:
        pytest.fail(f"the browser script printed no report:\n{stdout}\n{stderr}\n{web_stack.log_tail()}")
    (ARTIFACTS / f"web-report-{variant}.json").write_text(json.dumps(report, indent=2))
    context = f"\nsteps: {report['steps']}\n{stderr[-3000:]}\n{web_stack.log_tail()}"
    assert returncode == 0 and "failure" not in report, f"{report.get('failure')}{context}"

    # The page: title, the mode from GET /, and nothing broken on the way.
    assert report["title"] == "Dance analysis"
    assert report["modeBadge"] == "Mock analysis"
    assert report["pageErrors"] == []
    assert report["failedRequests"] == []
    # Chromium logs every 4xx answer: the wrong file (415), the wrong key and the stale link (401), the 429.
    expected = ("415", "401", "429")
    errors = [line for line in report["console"] if "error" in line.lower() and not any(s in line for s in expected)]
    assert not errors, report["console"]

    # The key never shows up where it could leak: no URL, no console line, not in the API's logs.
    if keys:
        assert report["urlsWithKey"] == 0
        assert api_key not in stdout and api_key not in stderr
        secret = api_key.removeprefix(key_prefix)
        assert not [path for path, log in web_stack.logs.items() if secret in log.read_text(errors="replace")]
    check_key_steps(report, keys)
    check_api_calls(report, keys)

    # A wrong file is refused in plain words, its code shown alongside.
    assert "The upload failed" in report["wrongFileMessage"]
    assert "UNSUPPORTED_MEDIA" in report["wrongFileMessage"]
    # Too many jobs for the key: the server's words, the code, and when to try again (Retry-After).
    assert "RATE_LIMITED" in report["rateLimitedMessage"], report["rateLimitedMessage"]
    assert "at most 20" in report["rateLimitedMessage"]
    assert "Try again in 60 s" in report["rateLimitedMessage"]

    # The upload bar moved through values below 100 % before it was full.
    upload = report["seen"]["upload"]
    assert upload[-1] == 1, upload
    assert any(0 < value < 1 for value in upload), f"no partial upload progress was shown: {upload}"

    # The job was followed live (Server-Sent Events), through its stages, to success; the first
    # stream was refused (401, like an expired link) and the page asked for a new link.
    job_id = report["jobId"]
    assert report["finalStatus"] == "succeeded", report["jobError"]
    calls = report["apiCalls"]
    streams = [c for c in calls if c["path"] == f"/jobs/{job_id}/events"]
    links = [c for c in calls if c["path"] == f"/jobs/{job_id}/events/token" and c["method"] == "POST"]
    assert len(streams) >= 2 and len(links) >= 2, (streams, links)
    for stream in streams:  # an EventSource: a signed link, never the key
        assert stream["type"] == "eventsource" and stream["token"] and stream["auth"] is None, stream
    seen = report["seen"]
    assert seen["statuses"][-1] == "succeeded"
    assert "running" in seen["statuses"], seen["statuses"]
    partial = [value for value in seen["jobProgress"] if 0 < value < 1]
    assert len(partial) >= 2, f"job progress seen: {seen['jobProgress']}"
    assert seen["jobProgress"] == sorted(seen["jobProgress"]), "the bar never goes back"
    assert len(set(seen["stages"])) >= 3, seen["stages"]

    # The annotated video plays from its link (signed API link or presigned storage URL, each
    # with Range support), at the source's size and length.
    video = report["video"]
    if variant == "keys-api-links":
        assert video["src"].startswith(f"{web_stack.api_url}/jobs/{job_id}/results/annotated.mp4?token="), video["src"]
    else:
        assert video["src"].startswith(f"{settings.s3_public_endpoint_url}/"), video["src"]
        assert "X-Amz-Signature=" in video["src"]
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

    # A download link for every result file, each one answering without a key (its link carries it).
    assert sorted(link["text"] for link in report["downloads"]) == sorted(
        ["annotated.mp4", "poses.json", "poses.csv", "metrics.json", "beats.json"]
    )
    assert set(report["downloadStatus"].values()) == {200}, report["downloadStatus"]

    # A 4 s tone has no beats to find: the page says why as a quiet note, with no marks and no timing.
    skipped = report["beatsJson"]["skipped"]
    assert skipped and report["beatsJson"]["beats"] == [], report["beatsJson"]
    music = report["music"]
    assert music["shown"] and music["quiet"], music
    assert music["text"] == f"No beat marks: {skipped.rstrip('.')}.", music
    assert music["beatMarks"] == 0
    assert len(music["onBeat"]) == len(report["dancers"])
    assert all(text.startswith("Not measured: ") for text in music["onBeat"]), music

    # A reload opens the same results again with no question asked.
    reload = report["afterReload"]
    assert reload["formShown"] is False and reload["hash"] == f"#job={job_id}"
    assert reload["videoSrc"] and reload["jobsShown"] >= 1

    # Delete removes it from the list and from the API.
    assert report["resultsHiddenAfterDelete"] is True
    assert report["afterDelete"] == 404

    assert screenshot.is_file() and screenshot.stat().st_size > 10_000


def check_key_steps(report: dict[str, Any], keys: bool) -> None:
    """What the page showed about the key, from the first view to the revoked key."""
    first = report["firstView"]
    if not keys:
        # An open API: nothing asked, nothing stored, no key shown; the same after a reload.
        assert first["formShown"] is False and first["status"] is None and first["stored"] == []
        assert report["afterReload"]["formShown"] is False and report["afterReload"]["stored"] == []
        assert report["afterReload"]["meChecked"] == 0
        return
    # The form is there first, with the focus in its field.
    assert first["formShown"] is True and first["focused"] == "key-input" and first["stored"] == []
    # A wrong key: the server's message, the field marked invalid and focused, nothing stored.
    wrong = report["wrongKey"]
    assert wrong["formShown"] is True and "not valid" in wrong["message"], wrong
    assert wrong["invalid"] == "true" and wrong["focused"] == "key-input" and wrong["stored"] == []
    # The right key: the form goes, the key's name and role show, the key is kept in this browser.
    signed_in = report["signedIn"]
    assert signed_in["formShown"] is False and signed_in["stored"] == ["key"]
    assert signed_in["status"] == f"Key {KEY_NAME} sees its own jobs Change key", signed_in["status"]
    # After a reload the kept key is checked (GET /me) and used: no form.
    reload = report["afterReload"]
    assert reload["formShown"] is False and reload["stored"] == ["key"] and reload["meChecked"] == 1
    assert reload["status"] == signed_in["status"]
    # Change key: the key is forgotten, the form is back (focused), the jobs of that key are gone from view.
    forgot = report["afterForget"]
    assert forgot["formShown"] is True and forgot["stored"] == [] and forgot["status"] is None
    assert forgot["focused"] == "key-input" and forgot["jobsShown"] == 0 and forgot["uploadShown"] is False
    assert report["afterSecondSignIn"]["stored"] == ["key"]
    # The key revoked by the operator: the next call's 401 forgets it and asks again, saying why.
    revoked = report["afterRevoke"]
    assert revoked["formShown"] is True and revoked["stored"] == [] and revoked["uploadShown"] is False
    assert "revoked" in revoked["message"], revoked["message"]
    assert revoked["focused"] == "key-input"


def check_api_calls(report: dict[str, Any], keys: bool) -> None:
    """Every call of the API carried the key in the header, but for what cannot (signed links) or need not."""
    calls = report["apiCalls"]
    assert calls and all("auth" in call for call in calls), calls
    for call in calls:
        where = f"{call['method']} {call['path']}"
        if call["path"] == "/":  # GET / needs no key, and the page sends none
            assert call["auth"] is None, call
        elif not keys:
            assert call["auth"] is None, f"{where} sent a key to an open API"
        elif call["token"]:  # the event stream and result files: their own signed link, no header
            assert call["auth"] is None and call["type"] in ("eventsource", "media"), call
            assert call["path"].endswith("/events") or "/results/" in call["path"], call
        elif call["auth"] == "wrong-key":
            assert where == "GET /me", call  # the wrong key went no further than its check
        else:
            assert call["auth"] == "key", f"{where} went without the key: {call}"
