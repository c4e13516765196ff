"""manage.sh's dispatcher and argument checks: fast, nothing is started or installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.fake_http import JsonHandler

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [ROOT / "manage.sh", ROOT / "scripts/manage/common.sh", ROOT / "scripts/manage/local.sh", ROOT / ".ci/run"]


def run(*args: str, root: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(root / "manage.sh"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )


@pytest.fixture
def without_compose(tmp_path: Path) -> Path:
    """A copy of manage.sh and its local parts, with no scripts/manage/compose.sh."""
    (tmp_path / "scripts/manage").mkdir(parents=True)
    shutil.copy(ROOT / "manage.sh", tmp_path / "manage.sh")
    for name in ("common.sh", "local.sh"):
        shutil.copy(ROOT / "scripts/manage" / name, tmp_path / "scripts/manage" / name)
    return tmp_path


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_are_shellcheck_clean() -> None:
    done = subprocess.run(
        ["shellcheck", "-x", *map(str, SCRIPTS)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout


def test_help_lists_every_part() -> None:
    done = run("help")
    assert done.returncode == 0
    for text in ("./manage.sh test", "./manage.sh local COMMAND", "test-upload FILE", "cpu (default)"):
        assert text in done.stdout


def test_no_arguments_prints_help() -> None:
    done = run()
    assert done.returncode == 0 and "Usage: ./manage.sh" in done.stdout


@pytest.mark.parametrize(
    "args",
    [("local", "bogus"), ("--bogus",), ("local", "logs", "nosuchservice"), ("local", "test-upload")],
)
def test_bad_commands_fail_with_one_line(args: tuple[str, ...]) -> None:
    done = run(*args)
    assert done.returncode != 0
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr


def test_test_upload_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    done = run("local", "test-upload", str(tmp_path / "missing.mp4"))
    assert done.returncode == 1
    assert done.stderr == f"error: no such file: {tmp_path / 'missing.mp4'}\n"


def test_test_upload_checks_the_profile(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    done = run("local", "test-upload", str(video), "--profile", "turbo")
    assert done.returncode == 1 and "fast or accurate" in done.stderr


class FakeAPI(JsonHandler):
    """/health, POST /analyze (a comparison follows), an analysis that succeeds with a beats.json
    and a comparison that fails; `requests` records (method, path, Authorization, body)."""

    requests: ClassVar[list[tuple[str, str, str | None, bytes]]] = []
    port = 0
    analysis = "a" * 32
    comparison = "c" * 32

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        FakeAPI.requests.append((self.command, self.path, self.headers.get("Authorization"), body))

    def do_POST(self) -> None:
        self._record()
        base = f"http://127.0.0.1:{FakeAPI.port}"
        self._json(202, {"job_id": self.analysis, "status": "queued", "status_url": f"{base}/jobs/{self.analysis}",
                         "comparison_job_id": self.comparison})  # fmt: skip

    def do_GET(self) -> None:
        self._record()
        port = FakeAPI.port
        if self.path == "/health":
            self._json(200, {"status": "ok"})
        elif self.path == f"/jobs/{self.analysis}":
            # A storage link, on another origin than the API's: it must not get the key's header.
            other = "localhost" if self.headers["Host"].startswith("127.0.0.1:") else "127.0.0.1"
            beats = f"http://{other}:{port}/bucket/beats.json?X-Amz-Signature=x"
            self._json(200, {"job_id": self.analysis, "status": "succeeded", "stage": "uploading", "progress": 1.0,
                             "results": {"poses.json": f"http://localhost:{port}/bucket/poses.json",
                                         "beats.json": beats}})  # fmt: skip
        elif self.path == f"/jobs/{self.comparison}":
            error = {"code": "NOT_ENOUGH_POSE", "message": "The attempt shows no dancer long enough."}
            self._json(200, {"job_id": self.comparison, "kind": "comparison", "status": "failed",
                             "stage": "aligning", "progress": 0.2, "results": {}, "error": error})  # fmt: skip
        elif self.path.startswith("/bucket/beats.json"):
            self._json(200, {"tempo_bpm": 119.6, "beat_count": 48, "skipped": None, "beats": []})
        else:
            self._json(404, {"error": {"code": "JOB_NOT_FOUND", "message": self.path}})


@pytest.fixture
def fake_api() -> Iterator[int]:
    FakeAPI.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    FakeAPI.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def upload_env(tmp_path: Path, port: int) -> dict[str, str]:
    """`local` and `cpu` test-upload both aimed at the fake API, with a key of their own."""
    return {
        "PATH": "/usr/bin:/bin",
        "LOCAL_DIR": str(tmp_path / "local"),
        "API_PORT": str(port),
        "BACKEND_PORT": str(port),
        "MANAGE_ENV_FILE": str(tmp_path / "no.env"),
        "API_KEY": "dak_test",
    }


NOT_AN_ID = "error: --reference must be the job id of a succeeded analysis (32 hex digits),"


@pytest.mark.parametrize("target", ["local", "cpu"])
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--reference", "abc"], f"{NOT_AN_ID} not 'abc'"),
        (["--reference=" + "g" * 32], f"{NOT_AN_ID} not 'gggg"),
        (["--reference", "a" * 33], NOT_AN_ID),
        (["--reference"], "error: --reference needs the job id of a succeeded analysis"),
        (["--reference", "a" * 32, "--mirror", "sideways"], "error: --mirror must be auto, on or off, not 'sideways'"),
        (["--reference", "a" * 32, "--mirror=ON"], "error: --mirror must be auto, on or off, not 'ON'"),
        (["--reference", "a" * 32, "--mirror"], "error: --mirror needs a value (auto, on or off)"),
        (["--mirror", "on"], "error: --mirror is an option of the comparison: give --reference JOB_ID too"),
    ],
)  # fmt: skip
def test_test_upload_checks_the_comparison_options_before_uploading(
    tmp_path: Path, fake_api: int, target: str, options: list[str], message: str
) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    done = run(target, "test-upload", str(video), *options, env=upload_env(tmp_path, fake_api))
    assert done.returncode == 1
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert FakeAPI.requests == []  # refused before even asking the API whether it runs


@pytest.mark.skipif(shutil.which("curl", path="/usr/bin:/bin") is None, reason="curl is not installed")
@pytest.mark.parametrize("target", ["local", "cpu"])
def test_test_upload_sends_the_reference_and_fails_with_the_comparison_s_error(
    tmp_path: Path, fake_api: int, target: str
) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    reference = "0123456789ABCDEF0123456789abcdef"
    done = run(
        target,
        "test-upload",
        str(video),
        "--reference",
        reference,
        "--mirror",
        "on",
        env=upload_env(tmp_path, fake_api),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    # The analysis's links and tempo, then the comparison's error: code and message.
    assert f"job {FakeAPI.analysis}" in done.stdout and f"comparison {FakeAPI.comparison}" in done.stdout
    assert "beats.json" in done.stdout and "tempo 120 BPM, 48 beats" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == (
        f"comparison {FakeAPI.comparison} failed: NOT_ENOUGH_POSE: The attempt shows no dancer long enough."
    )
    posted = next(body for method, _, _, body in FakeAPI.requests if method == "POST")
    fields = dict(re.findall(rb'name="(\w+)"\r\n\r\n([^\r]*)\r\n', posted))
    assert fields == {b"reference_job_id": reference.lower().encode(), b"mirror": b"on"}
    # The key goes to the API; the presigned storage link gets none (S3 would refuse a second auth).
    auth = {path.split("?")[0]: header for _, path, header, _ in FakeAPI.requests if path != "/health"}
    assert auth == {
        "/analyze": "Bearer dak_test",
        f"/jobs/{FakeAPI.analysis}": "Bearer dak_test",
        f"/jobs/{FakeAPI.comparison}": "Bearer dak_test",
        "/bucket/beats.json": None,
    }


def test_docker_commands_without_compose_sh_fail_clearly(without_compose: Path) -> None:
    for args in (("start",), ("nvidia", "start"), ("mac", "logs", "worker")):
        done = run(*args, root=without_compose)
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and "compose.sh is missing" in done.stderr, done.stderr


def test_help_without_compose_sh_still_works(without_compose: Path) -> None:
    done = run("help", root=without_compose)
    assert done.returncode == 0 and "not available yet" in done.stdout


def test_status_of_a_stack_that_never_ran(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LOCAL_DIR": str(tmp_path / "local"), "API_PORT": "18123"}
    done = run("local", "status", env=env)
    assert done.returncode == 3  # not running
    assert "api        stopped" in done.stdout and "http://127.0.0.1:18123/docs" in done.stdout


def test_the_stack_folder_and_its_secrets_are_private_and_kept(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir(mode=0o755)
    local.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "LOCAL_DIR": str(local), "API_PORT": "18124"}
    first = run("local", "status", env=env)
    assert local.stat().st_mode & 0o777 == 0o700
    secrets = local / "secrets.env"
    assert secrets.stat().st_mode & 0o777 == 0o600
    password = next(line.split("=", 1)[1] for line in secrets.read_text().splitlines() if "DASHBOARD" in line)
    assert len(password) >= 32 and f"password {password})" in first.stdout
    assert "needs a key: ./manage.sh local keys create NAME" in first.stdout
    # Made once: a second run shows the same password.
    assert f"password {password})" in run("local", "status", env=env).stdout
    opened = run("local", "status", env={**env, "API_AUTH": "open"})
    assert "OPEN: no key needed" in opened.stdout
    assert run("local", "status", env={**env, "API_AUTH": "maybe"}).returncode == 1


def test_a_bad_port_is_refused(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LOCAL_DIR": str(tmp_path / "local"), "API_PORT": "80000"}
    done = run("local", "status", env=env)
    assert done.returncode == 1 and "API_PORT=80000" in done.stderr


def test_an_unknown_profile_is_named_as_such() -> None:
    done = run("gpu", "start")
    assert done.returncode != 0
    assert done.stderr == "error: unknown profile 'gpu' (one of: local cpu nvidia amd mac)\n"
    done = run("frobnicate")
    assert done.returncode != 0 and "unknown command 'frobnicate'" in done.stderr


@pytest.mark.parametrize(("kind", "real"), [("gpu", True), ("minimal", False)])
def test_the_real_analysis_is_recognised_in_the_venv_s_requirements(kind: str, real: bool) -> None:
    """`local start` with real models checks that the venv's requirements include requirements-gpu.txt.
    Under pipefail, `requirements_closure | grep -q` failed that check: grep stops at the first line, and
    the function's next line dies of SIGPIPE. Run many times, since that depends on timing."""
    script = f"""
        set -euo pipefail
        source scripts/manage/common.sh
        VENV_REQUIREMENTS="$(requirements_file {kind})"
        for _ in $(seq 20); do
            if venv_has_real_analysis; then echo yes; else echo no; fi
        done
    """
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["yes" if real else "no"] * 20, done.stdout
