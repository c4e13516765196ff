"""docker-compose.yml: it resolves for every profile, and says what it should."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import Settings
from tests.docker.conftest import REPO

pytestmark = pytest.mark.docker

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
ALWAYS = {"redis", "minio", "create-bucket", "backend", "rq-dashboard"}
WORKERS = {"cpu": "worker-cpu", "nvidia": "worker-nvidia", "amd": "worker-amd"}
LONG_RUNNING = ALWAYS - {"create-bucket"} | set(WORKERS.values())


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def resolved(compose: list[str], profile: str | None, tmp_path: Path, env: dict[str, str] | None = None) -> dict:
    command = [*compose, "-f", str(COMPOSE_FILE), "--project-directory", str(REPO), "--env-file", str(ENV_EXAMPLE)]
    if profile:
        command += ["--profile", profile]
    done = subprocess.run(
        [*command, "config", "--format", "json"], capture_output=True, text=True, check=False, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("profile", ["cpu", "nvidia", "amd", "mac"])
def test_config_resolves_per_profile(compose: list[str], profile: str, tmp_path: Path) -> None:
    config = resolved(compose, None if profile == "mac" else profile, tmp_path)
    services = set(config["services"])
    expected = ALWAYS | ({WORKERS[profile]} if profile in WORKERS else set())
    assert services == expected
    backend = config["services"]["backend"]
    # Values from .env reach the containers; the compose network names reach the app.
    assert backend["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert backend["environment"]["S3_ENDPOINT_URL"] == "http://minio:9000"
    assert backend["environment"]["S3_PUBLIC_ENDPOINT_URL"] == "http://localhost:9000"


def check_config(compose: list[str], env_file: Path) -> subprocess.CompletedProcess[str]:
    """`compose config -q` of docker-compose.yml with only `env_file`'s settings (no shell environment)."""
    command = [*compose, "-f", str(COMPOSE_FILE), "--project-directory", str(REPO), "--env-file", str(env_file)]
    return subprocess.run(
        [*command, "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=env_file.parent,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_config_fails_with_a_clear_line_without_credentials(compose: list[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = check_config(compose, empty)
    assert done.returncode != 0
    # Compose names whichever required variable it meets first; each one's line says where to set it.
    required = ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "SECRET_KEY", "RQ_DASHBOARD_PASSWORD")
    assert any(f"set {name} in .env" in done.stderr for name in required), done.stderr


def test_profiles_select_one_worker_each(spec: dict[str, Any]) -> None:
    services = spec["services"]
    for name in ALWAYS:
        assert "profiles" not in services[name], f"{name} must run in every profile"
    for profile, name in WORKERS.items():
        assert services[name]["profiles"] == [profile]
        assert services[name]["build"]["dockerfile"] == f"docker/{name}.Dockerfile"
    assert not any("mac" in service.get("profiles", []) for service in services.values()), (
        "mac runs no worker container"
    )


def test_images_are_pinned_or_built_here(spec: dict[str, Any]) -> None:
    services = spec["services"]
    # Pinned by default; a variable so a mirror or a local stand-in can take its place.
    assert re.fullmatch(r"\$\{REDIS_IMAGE:-redis:\d+\.\d+-alpine\}", services["redis"]["image"])
    assert re.fullmatch(r"\$\{MINIO_IMAGE:-minio/minio:RELEASE\.\S+\}", services["minio"]["image"])
    assert services["backend"]["build"]["dockerfile"] == "docker/backend.Dockerfile"
    # The one-shot reuses the backend image and never pulls it; the dashboard is the same
    # Dockerfile's other target, so it advertises its own port, not the API's.
    assert services["create-bucket"]["image"] == services["backend"]["image"]
    assert services["create-bucket"]["pull_policy"] == "never"
    assert services["backend"]["build"]["target"] == "api"
    assert services["rq-dashboard"]["build"]["target"] == "rq-dashboard"
    assert services["rq-dashboard"]["build"]["dockerfile"] == "docker/backend.Dockerfile"
    assert services["rq-dashboard"]["image"] != services["backend"]["image"]
    # Every build takes its base image as an argument and may get the extra CA secret.
    for name in ("backend", "rq-dashboard", *WORKERS.values()):
        build = services[name]["build"]
        assert build["secrets"] == ["extra_ca_certs"], name
        assert "PYTHON_IMAGE" in build["args"] or "CUDA_IMAGE" in build["args"], name
    assert spec["secrets"]["extra_ca_certs"]["file"] == "${EXTRA_CA_CERTS:-/dev/null}"
    assert services["create-bucket"]["command"] == ["python", "-m", "shared.bucket"]
    assert services["backend"]["command"][:3] == ["python", "-m", "backend"]  # one process per core
    for name in WORKERS.values():
        assert "command" not in services[name], "the image's CMD (python -m worker) runs"


def test_ports(spec: dict[str, Any]) -> None:
    services = spec["services"]
    ports = {name: services[name].get("ports", []) for name in services}
    assert any(p.endswith(":9000") for p in ports["minio"])
    assert "127.0.0.1:${MINIO_CONSOLE_PORT:-9001}:9001" in ports["minio"]
    assert ports["rq-dashboard"] == ["127.0.0.1:${RQ_DASHBOARD_PORT:-9181}:9181"]
    assert ports["redis"] == ["127.0.0.1:${REDIS_PORT:-6379}:6379"]
    assert any(p.endswith(":8000") for p in ports["backend"])
    for name in WORKERS.values():
        assert not ports[name], "workers publish nothing"


def test_health_checks_and_start_order(spec: dict[str, Any]) -> None:
    services = spec["services"]
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check and check["test"][0] == "CMD", f"{name} needs a health check"
        assert services[name]["restart"] == "unless-stopped"
    assert "/health" in " ".join(services["backend"]["healthcheck"]["test"])
    assert services["create-bucket"]["restart"] == "no"
    assert services["create-bucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    need = {"redis": "service_healthy", "create-bucket": "service_completed_successfully"}
    for name in ["backend", *WORKERS.values()]:
        conditions = {dep: value["condition"] for dep, value in services[name]["depends_on"].items()}
        assert conditions == need, name
    assert services["rq-dashboard"]["depends_on"] == {"redis": {"condition": "service_healthy"}}


def test_redis_persists_jobs(spec: dict[str, Any]) -> None:
    command = spec["services"]["redis"]["command"]
    text = " ".join(command)
    assert "--appendonly yes" in text and "--appendfsync everysec" in text
    assert "--maxmemory-policy noeviction" in text
    assert spec["services"]["redis"]["volumes"] == ["redis-data:/data"]


def test_gpu_access(spec: dict[str, Any]) -> None:
    services = spec["services"]
    devices = services["worker-nvidia"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    amd = services["worker-amd"]
    assert amd["devices"] == ["/dev/kfd", "/dev/dri"]
    assert amd["group_add"] == ["${VIDEO_GID:-video}", "${RENDER_GID:-render}"]
    assert services["worker-cpu"]["environment"]["DEVICE"] == "cpu"
    assert services["worker-nvidia"]["environment"]["DEVICE"] == "cuda"
    assert amd["environment"]["DEVICE"] == "cuda"  # ROCm's torch answers to "cuda"
    assert "deploy" not in services["worker-cpu"] and "devices" not in services["worker-cpu"]


def test_rq_dashboard_runs_behind_its_login_and_checks(spec: dict[str, Any]) -> None:
    dashboard = spec["services"]["rq-dashboard"]
    env = dashboard["environment"]
    assert env["RQ_DASHBOARD_PASSWORD"].startswith("${RQ_DASHBOARD_PASSWORD:?")
    assert "RQ_DASHBOARD_USERNAME" in env
    # backend/dashboard.py: the login, the same-origin rule and the Host check in front of
    # rq-dashboard (which reads the JSON-serialized jobs there), not rq-dashboard's own CLI.
    assert dashboard["command"] == ["python", "-m", "backend.dashboard", "--host", "0.0.0.0", "--port", "9181"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    # It holds no storage or signing secret: nothing it does not use.
    assert not {"S3_SECRET_KEY", "S3_ACCESS_KEY", "SECRET_KEY", "METRICS_TOKEN"} & set(env)
    # Its healthcheck logs in, on a loopback Host it always answers to.
    test = dashboard["healthcheck"]["test"]
    assert "http://127.0.0.1:9181/" in test
    assert test[test.index("--auth-env") + 1] == "RQ_DASHBOARD_USERNAME:RQ_DASHBOARD_PASSWORD"


def test_app_environment_names_are_settings(spec: dict[str, Any]) -> None:
    """Every variable given to the backend/worker/dashboard is a field of shared.settings.Settings."""
    fields = {name.upper() for name in Settings.model_fields}
    for name in ["backend", "create-bucket", "rq-dashboard", *WORKERS.values()]:
        unknown = set(spec["services"][name]["environment"]) - fields
        assert not unknown, f"{name}: not settings: {sorted(unknown)}"


def test_no_secret_in_compose_file() -> None:
    text = COMPOSE_FILE.read_text()
    assert "minioadmin" not in text
    for name in ("MINIO_ROOT_PASSWORD", "RQ_DASHBOARD_PASSWORD", "MINIO_ROOT_USER", "SECRET_KEY"):
        assert re.search(r"\$\{" + name + r":\?", text), f"{name} must be required, not defaulted"


def test_env_example_covers_every_variable() -> None:
    text = COMPOSE_FILE.read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text)) - {"COMPOSE_PROJECT_NAME"}
    used |= set(re.findall(r"(?m)^    environment: ([A-Z0-9_]+)$", text))  # secrets read from a variable
    assert "METRICS_TOKEN" in used
    example = {
        line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z0-9_]+=", line)
    }
    assert used - example == set()


APP_SERVICES = {"backend", "create-bucket"}
# The secrets of the settings file (.env) and the Settings field each one becomes in the app.
SECRETS = {
    "MINIO_ROOT_PASSWORD": "s3_secret_key",
    "RQ_DASHBOARD_PASSWORD": "rq_dashboard_password",
    "SECRET_KEY": "secret_key",
    "METRICS_TOKEN": "metrics_token",
}


@pytest.mark.parametrize("profile", ["cpu", "nvidia", "amd", "mac"])
def test_every_app_service_runs_in_production_with_keys(compose: list[str], profile: str, tmp_path: Path) -> None:
    """By default the API, the workers and the bucket one-shot all build Settings() in production,
    so each refuses placeholder secrets and an open API at its start."""
    config = resolved(compose, None if profile == "mac" else profile, tmp_path, env={"PATH": "/usr/bin:/bin"})
    apps = APP_SERVICES | ({WORKERS[profile]} if profile in WORKERS else set())
    for name in apps:
        env = config["services"][name]["environment"]
        assert env["ENVIRONMENT"] == "production", name
        assert env["API_AUTH"] == "keys", name
        assert env["SECRET_KEY"] == "CHANGE-ME", name  # .env.example's placeholder, refused there
        assert env["ALLOWED_HOSTS"].split(",") == ["localhost", "127.0.0.1", "[::1]", "backend"], name
        assert env["MAX_UPLOADS_IN_FLIGHT_PER_KEY"] == "2" and env["MAX_QUEUED_JOBS_PER_KEY"] == "20", name
        assert env["S3_SECRET_KEY"] == "CHANGE-ME", name


def test_config_fails_naming_a_missing_secret_key(compose: list[str], tmp_path: Path) -> None:
    settings = tmp_path / "no-secret-key.env"
    settings.write_text(re.sub(r"(?m)^SECRET_KEY=.*\n", "", ENV_EXAMPLE.read_text()))
    done = check_config(compose, settings)
    assert done.returncode != 0
    assert "required variable SECRET_KEY is missing a value: set SECRET_KEY in .env" in done.stderr


def test_env_example_holds_no_usable_secret() -> None:
    """Every secret of .env.example is a placeholder the production settings refuse; none is a real value."""
    example = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if re.match(r"^[A-Z0-9_]+=", line)
    }
    for name in SECRETS:
        assert example[name] == "CHANGE-ME", name
    assert example["ENVIRONMENT"] == "production" and example["API_AUTH"] == "keys"
    with pytest.raises(ValueError, match="ENVIRONMENT=production refuses to start") as refused:
        Settings.model_validate(
            {
                "environment": example["ENVIRONMENT"],
                "api_auth": example["API_AUTH"],
                **{field: example[name] for name, field in SECRETS.items()},
            }
        )
    for field in SECRETS.values():
        assert field.upper() in str(refused.value)
    # Nothing else looks like a generated secret either (a value someone might copy and keep).
    assert not [name for name, value in example.items() if re.fullmatch(r"[0-9A-Za-z+/_=-]{24,}", value)]
    # Each secret's own comment says how to make one.
    lines = ENV_EXAMPLE.read_text().splitlines()
    for name in SECRETS:
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{name}="))
        comment: list[str] = []
        while lines[at - 1 - len(comment)].startswith("#"):
            comment.append(lines[at - 1 - len(comment)])
        assert "openssl rand -hex 32" in " ".join(comment), name


def test_only_the_api_and_the_s3_api_follow_bind_address(compose: list[str], tmp_path: Path) -> None:
    """BIND_ADDRESS=0.0.0.0 (a server): the API and MinIO's S3 API are published on it; the MinIO
    console, rq-dashboard, Redis and Prometheus stay on loopback."""
    settings = tmp_path / "server.env"
    settings.write_text(ENV_EXAMPLE.read_text() + "BIND_ADDRESS=0.0.0.0\n")
    command = [*compose, "-f", str(COMPOSE_FILE), "--project-directory", str(REPO), "--env-file", str(settings)]
    done = subprocess.run(
        [*command, "--profile", "cpu", "--profile", "monitoring", "config", "--format", "json"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    published = {
        (name, int(port["target"])): port.get("host_ip", "")
        for name, service in json.loads(done.stdout)["services"].items()
        for port in service.get("ports", [])
    }
    assert published == {
        ("backend", 8000): "0.0.0.0",
        ("minio", 9000): "0.0.0.0",
        ("minio", 9001): "127.0.0.1",
        ("rq-dashboard", 9181): "127.0.0.1",
        ("redis", 6379): "127.0.0.1",
        ("prometheus", 9090): "127.0.0.1",
    }


def test_prometheus_gets_the_metrics_token_as_a_secret_from_the_environment(compose: list[str], tmp_path: Path) -> None:
    """The token is the value of METRICS_TOKEN (environment, then .env), mounted as a file: nothing is
    written into an image or the repository, and it is not in Prometheus' environment or command."""
    done = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "--project-directory", str(REPO), "--env-file", str(ENV_EXAMPLE),
         "--profile", "monitoring", "config", "--format", "json"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert config["secrets"]["metrics_token"]["environment"] == "METRICS_TOKEN"
    prometheus = config["services"]["prometheus"]
    assert [(s["source"], s["target"]) for s in prometheus["secrets"]] == [("metrics_token", "metrics_token")]
    assert "METRICS_TOKEN" not in json.dumps({k: v for k, v in prometheus.items() if k != "secrets"})
    assert config["services"]["backend"]["environment"]["METRICS_TOKEN"] == "CHANGE-ME"
