"""Issue 12 in a real headless Chromium against a live stack in mock mode: on the beat, in sync, and
close to the reference.

compare_flow.mjs uploads a reference clip whose audio is clicks at a known tempo, opens its results,
uploads an attempt with that reference chosen in the upload form, starts a second comparison with
"Compare with…", watches both comparisons and clicks their worst moments; it reports what the page
showed beside the JSON the API returned, and the assertions here hold one against the other.
Screenshots: tests/artifacts/compare-<variant>-{results,dialog,compare,compare-pair,compare-phone}.png.
"""

from __future__ import annotations

import bisect
import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from shared.settings import Settings
from tests.auth import bearer, keyed, make_key
from tests.music import click_audio, write_music_video
from tests.synthetic import moving_frames

if TYPE_CHECKING:
    from tests.browser.conftest import BrowserTools, Stack

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SIZE = (640, 360)
FPS = 15.0
BPM = 120.0
FIRST_CLICK = 0.25  # seconds
SECONDS = 12.0  # the beat finder wants 10 s of audio or more (worker/pipeline/beats.py MIN_AUDIO_S)
DASH = "\u2013"  # between two times, as the page writes a span


def keys_with_api_links(settings: Settings) -> Settings:
    """Keys, and result links through the API, each signed for its one file (`?token=`)."""
    return keyed(settings).model_copy(update={"s3_public_endpoint_url": ""})


def open_api(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_auth": "open"})


VARIANTS = {"keys-api-links": keys_with_api_links, "open": open_api}


def click_times(seconds: float, bpm: float = BPM, first: float = FIRST_CLICK) -> list[float]:
    period = 60.0 / bpm
    return [first + k * period for k in range(int((seconds - first) / period) + 1)]


def write_click_clip(path: Path, seconds: float, shift: int = 0) -> list[float]:
    """An H.264 + AAC clip whose audio is 1 kHz clicks at BPM from FIRST_CLICK; returns the click times.

    `shift` moves the picture's content (the mock dancers do not care; a second clip looks different)."""
    frames = moving_frames(round(seconds * FPS) + shift, SIZE)[shift:]
    clicks = click_times(seconds)
    audio = click_audio(np.array(clicks), seconds, amplitude=0.8, noise=0.0)
    write_music_video(
        path, audio, seconds=seconds, fps=FPS, draw=lambda t: frames[min(round(t * FPS), len(frames) - 1)]
    )
    return clicks


def pct(x: float) -> str:
    """As the page writes a share: app.js pct()."""
    return f"{round(x * 100)} %"


def clock(t: float) -> str:
    """As the page writes a time: app.js clock()."""
    minutes = int(max(t, 0) // 60)
    return f"{minutes}:{max(t, 0) - 60 * minutes:04.1f}"


def interpolate(xs: list[float], ys: list[float], x: float) -> float:
    """The attempt's time at the reference's `x`, as comparison.json's series say (linear between samples)."""
    i = bisect.bisect_right(xs, x)
    if i <= 0:
        return ys[0] + (x - xs[0])
    if i >= len(xs):
        return ys[-1] + (x - xs[-1])
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 if x1 == x0 else y0 + (x - x0) / (x1 - x0) * (y1 - y0)


@pytest.mark.parametrize("web_stack", list(VARIANTS.values()), ids=list(VARIANTS), indirect=True)
def test_beats_sync_and_compare_in_a_browser(
    browser_tools: BrowserTools, web_stack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    variant = request.node.callspec.id
    settings = web_stack.settings
    api_key = make_key(settings, "studio-laptop") if settings.api_auth == "keys" else ""
    reference_clip, attempt_clip = tmp_path / "teacher.mp4", tmp_path / "me.mp4"
    clicks = write_click_clip(reference_clip, SECONDS)
    write_click_clip(attempt_clip, SECONDS - 1.5, shift=7)
    ARTIFACTS.mkdir(exist_ok=True)
    prefix = ARTIFACTS / f"compare-{variant}"
    for old in ARTIFACTS.glob(f"compare-{variant}-*.png"):
        old.unlink()
    env = {
        **os.environ,
        "API_URL": web_stack.api_url,
        "API_KEY": api_key,
        "REFERENCE_CLIP": str(reference_clip),
        "ATTEMPT_CLIP": str(attempt_clip),
        "SCREENSHOT_PREFIX": str(prefix),
        "CHROMIUM": browser_tools.chromium,
    }
    done = subprocess.run(
        [browser_tools.node, "compare_flow.mjs"], cwd=browser_tools.workdir, env=env,
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"the browser script printed no report:\n{done.stdout}\n{done.stderr}\n{web_stack.log_tail()}")
    (ARTIFACTS / f"compare-report-{variant}.json").write_text(json.dumps(report, indent=2))
    context = f"\nsteps: {report['steps']}\n{done.stderr[-3000:]}\n{web_stack.log_tail()}"
    assert done.returncode == 0 and "failure" not in report, f"{report.get('failure')}{context}"

    assert report["pageErrors"] == []
    assert report["failedRequests"] == []
    assert not [line for line in report["console"] if "error" in line.lower()], report["console"]
    check_calls(report, keyed=bool(api_key))
    check_reference_results(report["reference"], clicks)
    check_job_list(report)
    dancers = [
        dancers_of(web_stack.api_url, api_key, report[side]["answer"]["job_id"]) for side in ("reference", "attempt")
    ]
    check_dancer_choice(report, *dancers)
    check_compare_view(report["dialogComparison"], report["reference"], report["attempt"])
    check_form_comparison(report["formComparison"], report["reference"], report["attempt"])
    assert report["afterDelete"] == 404
    assert report["reference"]["answer"]["job_id"] in report["analysesLeft"]
    for name in ("results", "dialog", "compare", "compare-pair", "compare-phone"):
        shot = Path(f"{prefix}-{name}.png")
        assert shot.is_file() and shot.stat().st_size > 10_000, shot
    assert report["phoneOverflow"] <= 1, "the compare view is wider than a phone's screen"


def check_calls(report: dict[str, Any], keyed: bool) -> None:
    """The new calls went out: POST /compare, GET /jobs?status=succeeded, with the key when there is one."""
    calls = report["apiCalls"]
    compares = [c for c in calls if c["method"] == "POST" and c["path"] == "/compare"]
    assert len(compares) == 1, compares
    assert any(c["path"] == "/jobs" and "status=succeeded" in c["query"] for c in calls)
    for call in calls:
        if call["path"] == "/" or call["token"]:
            assert call["auth"] is None, call  # GET / needs no key; a signed link carries its own
        else:
            assert call["auth"] == ("key" if keyed else None), call


def check_reference_results(reference: dict[str, Any], clicks: list[float]) -> None:
    beats, metrics, page = reference["beats"], reference["metrics"], reference["page"]
    # The backend heard the clicks: a tempo of BPM and beats on the clicks (the fixture is right).
    assert beats["skipped"] is None, beats
    assert abs(beats["tempo_bpm"] - BPM) < 3, beats["tempo_bpm"]
    assert beats["beat_count"] == len(beats["beats"]) >= len(clicks) // 2, beats
    settled = [b for b in beats["beats"] if b > 2.0]  # past the tracker's run-in
    assert all(min(abs(b - c) for c in clicks) < 0.05 for b in settled), (beats["beats"], clicks)
    assert metrics["schema_version"] == "1.1" and metrics["music"]["beat_count"] == beats["beat_count"]
    assert "beats.json" in page["downloads"]

    # The music line: the tempo and the count, not a quiet note.
    assert not page["musicQuiet"], page["music"]
    assert f"{round(beats['tempo_bpm'])} beats per minute" in page["music"], page["music"]
    assert f"{beats['beat_count']} beats" in page["music"], page["music"]

    # One strip per dancer: a mark per beat, at the beat's time on the chart's axis; a dot per accent.
    ends = [d["series"]["time"][-1] for d in metrics["dancers"] if d["series"]["time"]]
    duration = max(metrics["video"]["duration"], *ends)
    by_track = {d["track_id"]: d for d in metrics["dancers"]}
    assert sorted(d["trackId"] for d in page["dancers"]) == sorted(by_track), page["dancers"]
    sync = metrics["synchrony"]
    for shown in page["dancers"]:
        dancer = by_track[shown["trackId"]]
        assert len(shown["beatMarks"]) == beats["beat_count"], shown
        for at, beat in zip(shown["beatMarks"], beats["beats"], strict=True):
            assert abs(at * duration - beat) < 0.02, (at * duration, beat)
        assert f"{beats['beat_count']} beats" in shown["stripLabel"]
        check_on_beat(shown, dancer["on_beat"], duration)
        check_in_sync(shown["inSync"], sync, shown["trackId"])

    # The group: its least-together moments, each a button that seeks the annotated video there.
    together = page["together"]
    assert together["shown"]
    if sync["skipped"]:
        assert together["text"] == f"Not measured: {sync['skipped'].rstrip('.')}." and not together["moments"]
    else:
        assert [m["start"] for m in together["moments"]] == [m["start"] for m in sync["least_together"]]
        for shown, moment in zip(together["moments"], sync["least_together"], strict=True):
            assert f"{clock(moment['start'])}{DASH}{clock(moment['end'])}" in shown["text"]
            assert f"{round(moment['spread_deg'])}° apart" in shown["text"]
        assert reference["togetherSeeks"], "no least-together moment to click"
        for seek in reference["togetherSeeks"]:
            assert abs(seek["player"] - seek["start"]) < 1 / FPS, seek


def check_on_beat(shown: dict[str, Any], on_beat: dict[str, Any] | None, duration: float) -> None:
    text = shown["onBeat"]
    assert text, shown
    if on_beat is None:
        assert text.startswith("Not measured"), text
        assert not shown["accentMarks"]
        return
    assert f"{pct(on_beat['on_beat_share'])} of accents on the beat" in text, text
    assert f"within ±{round(on_beat['tolerance_ms'])} ms" in text, text
    mean = on_beat["offset_ms"]["mean"]
    words = {"early": f"Hits {round(abs(mean))} ms early", "late": f"Hits {round(abs(mean))} ms late",
             "on the beat": "Right on the beat"}  # fmt: skip
    assert words[on_beat["tendency"]] in text, (text, on_beat)
    on = sum(abs(o) <= on_beat["tolerance_ms"] for o in on_beat["offsets_ms"])
    assert f"{on} of {on_beat['accents']})" in text, text
    # The accents on the strip: one dot each, where it happened, green when on the beat.
    assert len(shown["accentMarks"]) == len(on_beat["accent_times"])
    for dot, t, offset in zip(shown["accentMarks"], on_beat["accent_times"], on_beat["offsets_ms"], strict=True):
        assert abs(dot["at"] * duration - t) < 0.02 and dot["on"] == (abs(offset) <= on_beat["tolerance_ms"])


def check_in_sync(text: str | None, sync: dict[str, Any], track_id: int) -> None:
    assert text, "no in-sync line"
    if sync["skipped"]:
        assert text == f"Not measured: {sync['skipped'].rstrip('.')}.", text
        return
    entry = next((d for d in sync["dancers"] if d["track_id"] == track_id), None)
    if entry is None:
        assert text.startswith("Not measured"), text
        return
    lag = entry["lag_ms"]
    if lag is None:
        assert "No lag measured" in text, text
    elif abs(lag) < 20:
        assert text.startswith("With the group"), text
    else:
        assert f"{round(abs(lag))} ms {'behind' if lag > 0 else 'ahead of'} the group" in text, text
    if entry["similarity"] is not None:
        assert f"moves {pct(entry['similarity'])} like the group" in text, text


def check_job_list(report: dict[str, Any]) -> None:
    reference_id = report["reference"]["answer"]["job_id"]
    attempt = report["attempt"]
    # The upload form's reference: the 202 names the comparison that follows, and so does the job.
    form_id = attempt["answer"]["comparison_job_id"]
    assert form_id and attempt["answer"]["comparison_status_url"].endswith(f"/jobs/{form_id}")
    assert attempt["view"]["comparison_job_id"] == form_id
    assert "then compared with a reference" in attempt["row"]["meta"]
    form = report["formComparison"]["view"]
    assert form["kind"] == "comparison"
    assert form["comparison"]["reference_job_id"] == reference_id
    assert form["comparison"]["attempt_job_id"] == attempt["answer"]["job_id"]
    assert form["comparison"]["mirror"] == "on"
    # "Compare with…": every other succeeded analysis offered, the attempt itself not; mirror as chosen.
    assert report["dialog"]["options"] == [reference_id] and report["dialog"]["focused"] == "compare-reference"
    started = report["dialogComparison"]
    assert started["status"] == 202
    assert started["view"]["comparison"]["reference_job_id"] == reference_id
    assert started["view"]["comparison"]["attempt_job_id"] == attempt["answer"]["job_id"]
    assert started["view"]["comparison"]["mirror"] == "auto"
    # Comparisons in the list: their kind shown, "View comparison", no "Compare with…" of their own.
    for row in (report["formComparison"]["row"], started["row"]):
        assert row["kind"] == "comparison" and row["kindTag"] == "Comparison" and row["status"] == "succeeded", row
        assert row["openText"] == "View comparison" and not row["compareShown"], row
    for row in (report["reference"]["row"], attempt["row"]):
        assert row["kind"] == "analysis" and row["kindTag"] is None and row["compareShown"], row
    # The new stages in words, as the rows followed them live (an event may sum up two quick
    # updates, so each is looked for across the two jobs of its kind).
    stages = report["stages"]
    analyses = [stages.get(reference_id, []), stages.get(attempt["answer"]["job_id"], [])]
    comparisons = [stages.get(form_id, []), stages.get(started["answer"]["job_id"], [])]
    assert any("Finding the beats" in seen for seen in analyses), stages
    assert any("Aligning the two dancers" in seen for seen in comparisons), stages
    assert all(seen and seen[-1] == "Finished" for seen in analyses + comparisons), stages


def dancers_of(api_url: str, api_key: str, job_id: str) -> list[tuple[int, float]]:
    """(track id, seconds in view) of an analysis's dancers, longest first, read from its metrics.json."""
    answer = httpx.get(
        f"{api_url}/jobs/{job_id}/results/metrics.json",
        headers=bearer(api_key) if api_key else {},
        follow_redirects=True,
        timeout=30,
    )
    answer.raise_for_status()
    dancers = [(d["track_id"], d["summary"]["time_in_view_s"]) for d in answer.json()["dancers"]]
    return sorted(dancers, key=lambda d: (-d[1], d[0]))


def check_dancer_choice(
    report: dict[str, Any], reference_dancers: list[tuple[int, float]], attempt_dancers: list[tuple[int, float]]
) -> None:
    """ "Compare with…" lists each video's dancers, longest in view first (the API's default), and the
    dancer chosen is the one compared: the attempt has two, and the flow picks the one seen less."""
    for shown, dancers in (
        (report["dialog"]["referenceDancers"], reference_dancers),
        (report["dialog"]["attemptDancers"], attempt_dancers),
    ):
        assert [int(o["value"]) for o in shown["options"]] == [d[0] for d in dancers], (shown, dancers)
        for option, (track_id, seconds) in zip(shown["options"], dancers, strict=True):
            assert option["text"].startswith(f"Dancer {track_id} · in view {round(seconds)} s"), option
        assert shown["disabled"] == (len(dancers) < 2), shown
    assert len(attempt_dancers) == 2, attempt_dancers  # the fixture: a choice to make
    chosen = report["dialog"]["chosenAttemptDancer"]
    assert chosen == attempt_dancers[-1][0] != attempt_dancers[0][0]
    started = report["dialogComparison"]
    assert started["body"]["attempt_track_id"] == chosen
    assert started["body"]["reference_track_id"] == reference_dancers[0][0]
    assert started["view"]["comparison"]["attempt_track_id"] == chosen
    assert started["doc"]["attempt"]["track_id"] == chosen
    assert started["doc"]["reference"]["track_id"] == reference_dancers[0][0]


def check_compare_view(comparison: dict[str, Any], reference: dict[str, Any], attempt: dict[str, Any]) -> None:
    doc, page = comparison["doc"], comparison["page"]
    assert page["hash"] == f"#job={comparison['view']['job_id']}"
    assert page["score"] == pct(doc["score"]), (page["score"], doc["score"])
    for side in ("reference", "attempt"):
        assert f"{doc[side]['filename']} (dancer {doc[side]['track_id']})" in page["meta"], page["meta"]
    assert ("mirror image" in page["meta"]) == doc["mirrored"]
    if doc["other_orientation_score"] is not None:
        assert pct(doc["other_orientation_score"]) in page["orientation"], page["orientation"]
    assert sorted(page["downloads"]) == ["comparison.json", "comparison.mp4"]
    assert page["chartInked"] > 0.01 * page["chartPixels"], page["chartInked"]

    # The videos: the side-by-side file and the two annotated videos, all from their own links, playable.
    videos = page["videos"]
    assert all(v["error"] is None for v in videos.values()), videos
    assert "comparison.mp4" in videos["side"]["src"] and "annotated.mp4" in videos["reference"]["src"]
    assert reference["answer"]["job_id"] in videos["reference"]["src"]
    assert attempt["answer"]["job_id"] in videos["attempt"]["src"]
    assert abs(videos["side"]["duration"] - doc["reference"]["duration"]) < 0.25, (videos["side"], doc["reference"])
    assert videos["side"]["width"] > videos["side"]["height"] and videos["side"]["width"] >= SIZE[0]

    # The worst moments: as many as comparison.json has, in its order, in plain words.
    moments = doc["worst_moments"]
    assert moments, "the comparison found no worst moment"
    shown_times = [(m["start"], m["attemptStart"]) for m in page["worst"]]
    assert shown_times == [(m["start"], m["attempt_start"]) for m in moments]
    for shown, moment in zip(page["worst"], moments, strict=True):
        assert f"{clock(moment['start'])}{DASH}{clock(moment['end'])}" in shown["text"], shown
        assert f"{pct(moment['similarity'])} alike" in shown["text"], shown
        for name in moment["worst_keypoints"]:
            assert name.replace("_", " ") in shown["text"], (name, shown)
        assert "_" not in shown["text"], shown

    # Clicking one seeks every video: the side-by-side and the reference to its start, the attempt to its own.
    frame = 1 / FPS
    assert comparison["seeks"], "no worst moment was clicked"
    for seek in comparison["seeks"]:
        moment = moments[seek["moment"]]
        assert abs(seek["compare-player"] - moment["start"]) <= 2 * frame, (seek, moment)
        assert abs(seek["reference-player"] - moment["start"]) <= 2 * frame, (seek, moment)
        assert abs(seek["attempt-player"] - moment["attempt_start"]) <= 2 * frame, (seek, moment)

    # The two originals in step: as the reference plays, the attempt is where comparison.json says.
    assert comparison["pairShown"]
    switched = comparison["afterSwitch"]
    last = moments[comparison["seeks"][-1]["moment"]]
    assert abs(switched["reference-player"] - last["start"]) <= 2 * frame, switched
    series = doc["series"]
    pairs = zip(series["time"], series["attempt_time"], strict=True)
    known = [(t, a) for t, a in pairs if t is not None and a is not None]
    ref_t, att_t = [t for t, _ in known], [a for _, a in known]
    samples = comparison["samples"]["samples"]
    assert len(samples) >= 5, samples
    assert samples[-1]["reference"] - samples[0]["reference"] > 1.0, "the reference did not play"
    misses = [s for s in samples if abs(s["attempt"] - interpolate(ref_t, att_t, s["reference"])) > 0.15]
    assert len(misses) <= 1, (misses, samples)
    after = comparison["samples"]["afterPause"]
    assert after["attemptPaused"]
    assert abs(after["attempt"] - interpolate(ref_t, att_t, after["reference"])) <= 2 * frame, after


def check_form_comparison(comparison: dict[str, Any], reference: dict[str, Any], attempt: dict[str, Any]) -> None:
    """Reached from the attempt's results ("See the comparison…"); it links back to both analyses."""
    doc, page = comparison["doc"], comparison["page"]
    assert doc["mirror"] == "on" and doc["mirrored"] is True
    assert page["score"] == pct(doc["score"])
    assert page["orientation"] == "Compared as a mirror image, as asked."
    assert page["worst"] == len(doc["worst_moments"])
    assert page["resultsHidden"]
    assert page["analysisLinks"] == [reference["answer"]["job_id"], attempt["answer"]["job_id"]]
    back = comparison["backToReference"]
    assert back["compareHidden"] and back["title"] == f"Results: {reference['view']['filename']}", back
