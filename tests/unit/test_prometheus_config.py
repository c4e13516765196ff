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


def compose_services() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


def test_promtool_accepts_the_config() -> None:
    promtool = find_tool("promtool")
    if promtool is None:
        missing_tool("promtool (Debian's prometheus package)")
    done = subprocess.run([promtool, "check", "config", str(CONFIG)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


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
