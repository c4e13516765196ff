"""docker/prometheus.yml and the optional `prometheus` service of docker-compose.yml (profile
`monitoring`). The full loop (a real Prometheus scraping a live API) is in
tests/service/test_metrics.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.tools import find_tool, missing_tool

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "docker" / "prometheus.yml"
# Where Compose writes the secret metrics_token inside the Prometheus container.
SECRET_PATH = "/run/secrets/metrics_token"


def compose_services() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


def test_promtool_accepts_the_config(tmp_path: Path) -> None:
    """The full check (files included), with the credentials file where Compose puts it in the container."""
    promtool = find_tool("promtool")
    if promtool is None:
        missing_tool("promtool (Debian's prometheus package)")
    token = tmp_path / "metrics_token"
    token.write_text("a-token-for-the-check\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(CONFIG.read_text().replace(SECRET_PATH, str(token)))
    done = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(CONFIG)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_it_authenticates_with_the_metrics_token_from_a_compose_secret() -> None:
    """GET /metrics needs a credential; METRICS_TOKEN reaches Prometheus as a Compose secret whose
    source is the environment (or .env), so it is in no image, no committed file, no command line."""
    (job,) = yaml.safe_load(CONFIG.read_text())["scrape_configs"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": SECRET_PATH}
    assert "credentials" not in job["authorization"] and "bearer_token" not in job
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    service = compose["services"]["prometheus"]
    assert service["secrets"] == [{"source": "metrics_token", "target": "metrics_token"}]
    assert "environment" not in service and "command" not in service
    # The API checks the same value.
    assert compose["x-app-env"]["METRICS_TOKEN"] == "${METRICS_TOKEN:-}"


def test_it_scrapes_the_backend_every_15_seconds() -> None:
    spec = yaml.safe_load(CONFIG.read_text())
    assert spec["global"]["scrape_interval"] == "15s"
    (job,) = spec["scrape_configs"]
    assert job["job_name"] == "dance-backend" and job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"] == [{"targets": ["backend:8000"]}]
    backend = compose_services()["backend"]
    assert "--port" in backend["command"] and backend["command"][backend["command"].index("--port") + 1] == "8000"


def test_the_compose_service_is_optional_and_checked() -> None:
    service = compose_services()["prometheus"]
    assert service["profiles"] == ["monitoring"]
    assert service["image"].startswith("${PROMETHEUS_IMAGE:-prom/prometheus:v3.")
    assert "./docker/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in service["volumes"]
    assert "prometheus-data:/prometheus" in service["volumes"]
    assert service["ports"] == ["127.0.0.1:${PROMETHEUS_PORT:-9090}:9090"]
    assert service["depends_on"] == {"backend": {"condition": "service_healthy"}}
    # prom/prometheus is busybox-based: wget is in it, curl is not.
    assert service["healthcheck"]["test"][:2] == ["CMD", "wget"]
    assert "prometheus-data" in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["volumes"]
