"""Upload one video to the API and follow its job: `./manage.sh local test-upload FILE`.

The upload goes through curl (it streams the file and shows progress); polling uses the
standard library only, so this runs with any Python 3.

With `--reference JOB_ID` (one of the caller's succeeded analyses) the upload is also the
attempt of a comparison job, which runs once the analysis ends: it is followed to its end
too, and comparison.json is read back for a one-line summary (score, mirrored or not, the
worst moment). The analysis's tempo is read from its beats.json. The exit code is 0 only
when every job followed succeeded and those files could be read.

An API key (`--api-key KEY`, or API_KEY in the environment) is sent on every call as
`Authorization: Bearer KEY`. It reaches curl on its standard input, not its command line,
so other users of the machine cannot read it in `ps`. Without one, nothing is sent (an API
running with API_AUTH=open needs none).
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

FINAL = {"succeeded", "failed", "canceled"}
MIRRORS = ("auto", "on", "off")
JOB_ID = re.compile(r"[0-9a-fA-F]{32}")
VIDEO_TYPES = {".mkv": "video/x-matroska", ".m4v": "video/x-m4v", ".webm": "video/webm", ".avi": "video/x-msvideo"}


def content_type(path: Path) -> str:
    return VIDEO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def error_text(body: Any, fallback: str) -> str:
    """`CODE: message` from the API's error envelope, else the fallback."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return f"{error.get('code', '?')}: {error.get('message', '')}"
    return fallback


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def curl_config(api_key: str | None) -> str:
    """curl's config-file text (read from stdin with `-K -`) carrying the key's header."""
    if not api_key:
        return ""
    value = f"Authorization: Bearer {api_key}".replace("\\", "\\\\").replace('"', '\\"')
    return f'header = "{value}"\n'


def rejected(what: str, status: str | int, body: Any, fallback: str) -> SystemExit:
    """The error for an answer that is not 2xx; 401/403 say how to pass a key."""
    text = f"error: {what}, HTTP {status}: {error_text(body, fallback)}"
    if str(status) in {"401", "403"}:
        text += "\nThe API needs a key: --api-key KEY or API_KEY (make one: ./manage.sh PROFILE keys create NAME)"
    return SystemExit(text)


def upload(
    api: str,
    path: Path,
    profile: str | None,
    api_key: str | None = None,
    reference: str | None = None,
    mirror: str | None = None,
) -> dict[str, Any]:
    # curl -F takes ; and , as separators inside a value: quote the file name.
    quoted = '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            "curl",
            "-sS",
            "-o",
            out.name,
            "-w",
            "%{http_code}",
            "-K",
            "-",
            "-F",
            f"file=@{quoted};type={content_type(path)}",
        ]
        if profile:
            command += ["-F", f"profile={profile}"]
        if reference:
            command += ["-F", f"reference_job_id={reference}"]
            if mirror:
                command += ["-F", f"mirror={mirror}"]
        if sys.stderr.isatty():
            command[1] = "--progress-bar"
        print(f"uploading {path} ({path.stat().st_size / 1e6:.1f} MB) to {api}/analyze", file=sys.stderr)
        done = subprocess.run(
            [*command, f"{api}/analyze"], input=curl_config(api_key), stdout=subprocess.PIPE, text=True, check=False
        )
        status = done.stdout.strip()
        if done.returncode != 0:
            raise SystemExit(f"error: the upload failed (curl exit {done.returncode})")
        raw = Path(out.name).read_text(errors="replace")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        body = None
    if not status.startswith("2"):
        raise rejected("upload rejected", status, body, raw.strip()[:300])
    if not isinstance(body, dict) or not (body.get("job_id") or body.get("id")):
        raise SystemExit(f"error: unexpected answer to the upload: {raw.strip()[:300]}")
    return body


def get_job(api: str, job_id: str, api_key: str | None = None) -> dict[str, Any]:
    request = urllib.request.Request(f"{api}/jobs/{job_id}", headers=auth_headers(api_key))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as exc:
        try:
            body = json.load(exc)
        except ValueError:
            body = None
        raise rejected(f"GET /jobs/{job_id}", exc.code, body, str(exc.reason)) from None


def describe(job: dict[str, Any]) -> str:
    parts = [f"status={job.get('status')}", f"stage={job.get('stage')}"]
    progress = job.get("progress")
    if isinstance(progress, (int, float)):
        parts.append(f"progress={progress * 100:5.1f}%")
    if job.get("frames_total"):
        parts.append(f"frames={job.get('frames_done', 0)}/{job['frames_total']}")
    return "  ".join(parts)


def follow(api: str, job_id: str, api_key: str | None, poll: float, deadline: float) -> dict[str, Any] | None:
    """Poll the job until it ends, printing its progress; None when the deadline passes first."""
    tty = sys.stdout.isatty()
    last = ""
    while True:
        job = get_job(api, job_id, api_key)
        line = describe(job)
        if tty:
            print(f"\r\033[K{line}", end="", flush=True)
        elif line != last:
            print(line, flush=True)
        last = line
        if job.get("status") in FINAL:
            if tty:
                print()
            return job
        if time.monotonic() > deadline:
            if tty:
                print()
            return None
        time.sleep(poll)


def print_results(job: dict[str, Any]) -> dict[str, str]:
    """The job's result links, printed; name → link."""
    results = job.get("results") or {}
    links = {str(name): str(url) for name, url in results.items()} if isinstance(results, dict) else {}
    print("results:")
    items = links.items() if isinstance(results, dict) else ((str(name), "") for name in results)
    for name, url in items:
        print(f"  {name:15} {url}")
    return links


def failure(what: str, job_id: str, job: dict[str, Any]) -> str:
    """`job ID failed: CODE: message`, from the job's error."""
    error = job.get("error") or {}
    return f"{what} {job_id} {job.get('status')}: {error.get('code', '?')}: {error.get('message', '')}"


class Unreadable(Exception):
    """A result file that its link did not give back as JSON."""


def same_origin(url: str, api: str) -> bool:
    link, base = urllib.parse.urlsplit(url), urllib.parse.urlsplit(api)
    return (link.scheme, link.netloc) == (base.scheme, base.netloc)


def fetch_json(url: str, api: str, api_key: str | None) -> Any:
    """A JSON result through its link. The links are signed already: a storage link (presigned)
    must not get the key's header (S3 refuses a second way to authenticate); an API link may."""
    headers = auth_headers(api_key) if same_origin(url, api) else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            body = json.load(exc)
        except ValueError:
            body = None
        raise Unreadable(f"GET {url.split('?')[0]}, HTTP {exc.code}: {error_text(body, str(exc.reason))}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Unreadable(f"could not read {url.split('?')[0]}: {exc}") from None


def tempo_line(beats: dict[str, Any]) -> str:
    """`tempo 120 BPM, 48 beats`, or `no beats: <why>` (beats.json)."""
    tempo = beats.get("tempo_bpm")
    if isinstance(tempo, (int, float)) and tempo > 0:
        count = beats.get("beat_count", len(beats.get("beats") or []))
        return f"tempo {tempo:.0f} BPM, {count} beats"
    return f"no beats: {beats.get('skipped') or 'none found'}"


def span(start: Any, end: Any) -> str:
    return f"{float(start):.2f}-{float(end):.2f} s"


def score_line(comparison: dict[str, Any]) -> str:
    """`score 83.4%, mirrored (mirror auto), worst moment 1.20-2.40 s ...` (comparison.json)."""
    parts = [f"score {float(comparison['score']) * 100:.1f}%"]
    mirrored = "mirrored" if comparison.get("mirrored") else "not mirrored"
    parts.append(f"{mirrored} (mirror {comparison.get('mirror', '?')})")
    moments = comparison.get("worst_moments") or []
    if moments:
        worst = moments[0]
        text = f"worst moment {span(worst['start'], worst['end'])} of the reference"
        text += f" ({span(worst['attempt_start'], worst['attempt_end'])} of the attempt"
        similarity = worst.get("similarity")
        if isinstance(similarity, (int, float)):
            text += f", similarity {similarity * 100:.0f}%"
        parts.append(text + ")")
    else:
        parts.append("no worst moment")
    return ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", required=True)
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--profile")
    parser.add_argument("--reference", help="compare with this succeeded analysis (its job id, 32 hex digits)")
    parser.add_argument("--mirror", choices=MIRRORS, help="the comparison's mirror option (default: auto)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("API_KEY") or None,
        help="sent as 'Authorization: Bearer KEY' (default: $API_KEY; prefer it: a command line is visible in ps)",
    )
    args = parser.parse_args()
    api = args.api.rstrip("/")
    api_key = (args.api_key or "").strip() or None
    if api_key and any(char.isspace() or ord(char) < 32 for char in api_key):
        raise SystemExit("error: the API key has spaces or control characters in it")
    reference = (args.reference or "").strip().lower() or None
    if reference and not JOB_ID.fullmatch(reference):
        raise SystemExit(f"error: --reference must be an analysis job id (32 hex digits), not {args.reference!r}")
    if args.mirror and not reference:
        raise SystemExit("error: --mirror needs --reference (it is an option of the comparison)")

    created = upload(api, args.file, args.profile, api_key, reference, args.mirror)
    job_id = str(created.get("job_id") or created.get("id"))
    print(f"job {job_id}")
    comparison_id = created.get("comparison_job_id")
    if reference:
        if not comparison_id:
            print(f"error: the API answered without a comparison_job_id: {created}", file=sys.stderr)
            return 1
        print(f"comparison {comparison_id} (runs once the analysis ends)")
    deadline = time.monotonic() + args.timeout

    job = follow(api, job_id, api_key, args.poll, deadline)
    if job is None:
        print(f"error: job {job_id} not finished after {args.timeout:.0f}s", file=sys.stderr)
        return 1
    if job.get("status") != "succeeded":
        print(failure("job", job_id, job), file=sys.stderr)
        if comparison_id:
            print(f"comparison {comparison_id} not followed: it fails without its attempt", file=sys.stderr)
        return 1
    links = print_results(job)
    code = 0
    if "beats.json" in links:
        try:
            print(tempo_line(fetch_json(links["beats.json"], api, api_key)))
        except (Unreadable, AttributeError, TypeError, ValueError) as exc:
            print(f"error: beats.json: {exc}", file=sys.stderr)
            code = 1
    if not comparison_id:
        return code

    print(f"comparison {comparison_id}")
    comparison = follow(api, str(comparison_id), api_key, args.poll, deadline)
    if comparison is None:
        print(f"error: comparison {comparison_id} not finished after {args.timeout:.0f}s", file=sys.stderr)
        return 1
    if comparison.get("status") != "succeeded":
        print(failure("comparison", str(comparison_id), comparison), file=sys.stderr)
        return 1
    links = print_results(comparison)
    if "comparison.json" not in links:
        print(f"error: comparison {comparison_id} succeeded without a comparison.json", file=sys.stderr)
        return 1
    try:
        print(score_line(fetch_json(links["comparison.json"], api, api_key)))
    except Unreadable as exc:
        print(f"error: comparison.json: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        print(f"error: comparison.json is not as expected ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
