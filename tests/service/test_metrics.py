"""`GET /metrics` on a live API with real jobs run by a real worker process, checked by
prometheus-client's parser, by Debian's `promtool check metrics`, and scraped by a real
Prometheus server whose query API then returns a figure these jobs caused."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from backend.main import create_app
from shared.jobs import JobStatus
from shared.metrics import CONTENT_TYPE
from shared.settings import Settings
from tests.auth import bearer, keyed, make_key
from tests.processes import ROOT, live_api, wait_for, worker_process
from tests.services import ServerProcess, _launch, _wait, free_port
from tests.synthetic import make_clip
from tests.tools import find_tool, missing_tool
from worker import tasks
from worker.analysis.mock import MockAnalyzer
from worker.context import build_context

pytestmark = pytest.mark.service

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("metrics") / "clip.mp4", seconds=2, fps=15)


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def submit(api: str, name: str, data: bytes, headers: dict[str, str] | None = None) -> str:
    response = httpx.post(f"{api}/analyze", files={"file": (name, data, "video/mp4")}, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def status_of(api: str, job_id: str) -> str:
    return str(httpx.get(f"{api}/jobs/{job_id}", timeout=10).json()["status"])


@pytest.fixture
def finished_jobs(service_settings: Settings, clip: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, object]]]:
    """A live API and a worker that ran: two jobs that succeeded, one that failed (not a video
    inside), one canceled before it ran. Yields the API's URL and what was done."""
    broken = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 5000  # an MP4 header, then nothing a decoder reads
    with live_api(service_settings) as api:
        canceled = submit(api, "canceled.mp4", clip.read_bytes())
        assert httpx.post(f"{api}/jobs/{canceled}/cancel", timeout=10).json()["status"] == "canceled"
        good = [submit(api, f"good{i}.mp4", clip.read_bytes()) for i in range(2)]
        bad = submit(api, "broken.mp4", broken)
        with worker_process(service_settings, tmp_path / "worker") as worker:
            final = {s.value for s in JobStatus if s.is_final}
            for job_id in [*good, bad]:
                wait_for(lambda j=job_id: status_of(api, j) in final, 60, f"job {job_id}\n{worker.log_text()[-2000:]}")
            assert [status_of(api, job_id) for job_id in good] == ["succeeded", "succeeded"]
            assert status_of(api, bad) == "failed"
            # The busy flag goes once the worker has let go of the job.
            wait_for(lambda: all(not p.get("job") for p in worker.presences().values()), 10, "the worker to be idle")
            yield (
                api,
                {
                    "good": good,
                    "bad": bad,
                    "uploaded_bytes": 3 * clip.stat().st_size + len(broken),
                    "queue": service_settings.queue_name,
                },
            )


def test_metrics_count_what_the_jobs_did(finished_jobs: tuple[str, dict[str, object]]) -> None:
    api, done = finished_jobs
    response = httpx.get(f"{api}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    found = parse(response.text)

    def value(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    assert value("dance_jobs", status="succeeded") == 2
    assert value("dance_jobs", status="failed") == 1
    assert value("dance_jobs", status="canceled") == 1
    assert value("dance_jobs", status="queued") == 0 and value("dance_jobs", status="running") == 0
    queue = str(done["queue"])
    assert value("dance_queue_jobs", queue=queue, state="queued") == 0
    assert value("dance_queue_jobs", queue=queue, state="finished") == 2
    assert value("dance_queue_jobs", queue=queue, state="failed") == 1
    assert (value("dance_workers"), value("dance_workers_busy")) == (1, 0)
    assert value("dance_upload_bytes_total") == done["uploaded_bytes"]
    assert value("dance_uploads_total") == 4

    # The canceled job never ran: only the three that a worker ran are in the histograms.
    assert value("dance_job_duration_seconds_count", status="succeeded") == 2
    assert value("dance_job_duration_seconds_count", status="failed") == 1
    assert value("dance_job_run_seconds_count", status="succeeded") == 2
    assert value("dance_job_duration_seconds_bucket", status="succeeded", le="+Inf") == 2
    # Waiting includes running: the client's wait is never shorter than the run.
    assert value("dance_job_duration_seconds_sum", status="succeeded") >= value(
        "dance_job_run_seconds_sum", status="succeeded"
    )
    # Every stage of the two good runs; the broken upload got through fetching only.
    assert value("dance_stage_duration_seconds_count", stage="fetching") == 3
    for stage in ("analyzing", "rendering", "exporting", "uploading"):
        assert value("dance_stage_duration_seconds_count", stage=stage) == 2, stage
    assert value("dance_analysis_frames_per_second_count", profile="fast") == 2
    assert value("dance_analysis_frames_per_second_sum", profile="fast") > 0


def test_promtool_accepts_the_real_output(finished_jobs: tuple[str, dict[str, object]]) -> None:
    promtool = find_tool("promtool")
    if promtool is None:
        missing_tool("promtool (Debian's prometheus package)")
    api, _ = finished_jobs
    body = httpx.get(f"{api}/metrics", timeout=10).text
    done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_metrics_answer_503_when_redis_is_down(service_settings: Settings) -> None:
    settings = service_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with live_api(settings, create_app(settings)) as api:
        response = httpx.get(f"{api}/metrics", timeout=30)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "QUEUE_UNAVAILABLE"


@contextlib.contextmanager
def prometheus_scraping(target: str, workdir: Path, token: str) -> Iterator[str]:
    """Debian's real `prometheus` binary with docker/prometheus.yml, scraping `target` (host:port)
    every second with `token` as its bearer credential (METRICS_TOKEN); yields its URL."""
    binary = find_tool("prometheus")
    if binary is None:
        missing_tool("prometheus (Debian's prometheus package)")
    workdir.mkdir(parents=True, exist_ok=True)
    # The committed configuration of the Compose service, pointed at the live API and made quicker.
    spec = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    spec["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    (job,) = spec["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["backend:8000"]}]
    job["static_configs"] = [{"targets": [target]}]
    # Where Compose mounts the METRICS_TOKEN secret, here a file of the test's own.
    assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    (workdir / "metrics_token").write_text(token)
    job["authorization"]["credentials_file"] = str(workdir / "metrics_token")
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(spec))
    port = free_port()
    command = [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    server: ServerProcess = _launch("prometheus", command, workdir)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        return False

    try:
        _wait(server, ready, 60)
        yield url
    finally:
        server.stop()


def query(url: str, promql: str) -> list[dict[str, object]]:
    response = httpx.get(f"{url}/api/v1/query?query={urllib.parse.quote(promql)}", timeout=5)
    body = response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_a_real_prometheus_scrapes_the_api_and_sees_the_upload(
    service_settings: Settings, clip: Path, tmp_path: Path
) -> None:
    # As in Compose: keys required, and Prometheus holding the metrics token.
    settings = keyed(service_settings).model_copy(update={"metrics_token": "scrape-" + "z" * 32})
    with live_api(settings) as api:
        job_id = submit(api, "clip.mp4", clip.read_bytes(), bearer(make_key(settings, "dancer")))
        assert httpx.get(f"{api}/metrics", timeout=5).status_code == 401
        target = api.removeprefix("http://")
        with prometheus_scraping(target, tmp_path / "prometheus", settings.metrics_token) as prometheus:

            def scraped() -> list[dict[str, object]]:
                return query(prometheus, 'dance_jobs{job="dance-backend",status="queued"}')

            result = wait_for(scraped, 60, "Prometheus to scrape /metrics", every=0.5)
            assert isinstance(result, list) and result[0]["value"][1] == "1"  # type: ignore[index]
            uploaded = query(prometheus, "dance_upload_bytes_total")
            assert float(uploaded[0]["value"][1]) == clip.stat().st_size  # type: ignore[index]
            targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            assert [t["health"] for t in targets] == ["up"], json.dumps(targets)[:2000]
    assert job_id  # still queued: no worker ran here


def test_a_job_succeeds_when_its_metrics_cannot_be_written(
    service_settings: Settings, clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(service_settings)) as api:
        context = build_context(service_settings, analyzer=MockAnalyzer())
        # Whatever sits under the metrics key, Redis refuses to count into it (WRONGTYPE).
        context.redis.set(context.store.keys.metrics(), "not a hash")
        response = api.post("/analyze", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")})
        assert response.status_code == 202  # the upload's count failed too: the upload did not
        job_id = response.json()["job_id"]
        with caplog.at_level(logging.WARNING, logger="shared.metrics"):
            assert tasks.run(context, job_id) == "succeeded"
        assert api.get(f"/jobs/{job_id}").json()["status"] == "succeeded"
    assert "metrics not recorded" in caplog.text and "WRONGTYPE" in caplog.text
