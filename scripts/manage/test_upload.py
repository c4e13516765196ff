"""Upload one video to the API and follow its job: `./manage.sh local test-upload FILE`.

The upload goes through curl (it streams the file and shows progress); polling uses the
standard library only, so this runs with any Python 3.

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
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

FINAL = {"succeeded", "failed", "canceled"}
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


def upload(api: str, path: Path, profile: str | None, api_key: str | None = None) -> dict[str, Any]:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", required=True)
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--profile")
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

    created = upload(api, args.file, args.profile, api_key)
    job_id = str(created.get("job_id") or created.get("id"))
    print(f"job {job_id}")
    tty = sys.stdout.isatty()
    deadline = time.monotonic() + args.timeout
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
            break
        if time.monotonic() > deadline:
            print()
            print(f"error: job {job_id} not finished after {args.timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(args.poll)
    if tty:
        print()
    if job.get("status") == "succeeded":
        results = job.get("results") or {}
        print("results:")
        items = results.items() if isinstance(results, dict) else ((name, "") for name in results)
        for name, url in items:
            print(f"  {name:14} {url}")
        return 0
    error = job.get("error") or {}
    print(f"job {job_id} {job.get('status')}: {error.get('code', '?')}: {error.get('message', '')}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
