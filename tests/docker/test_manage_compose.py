"""manage.sh's Docker commands (scripts/manage/compose.sh) against a stub `docker`.

The stub records each call's arguments, one line per call; nothing needs an engine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from shared.settings import _KNOWN_DEFAULT_SECRETS, Settings, is_placeholder_secret
from tests.docker.conftest import REPO
from tests.fake_http import JsonHandler

pytestmark = pytest.mark.docker

MANAGE = REPO / "manage.sh"
# DOCKER_STUB_IMAGES: what `compose ... config --images` prints; DOCKER_STUB_MISSING: images
# `image inspect` does not find (space-separated); DOCKER_STUB_FAIL: calls containing it fail;
# DOCKER_STUB_PS: what `compose ... ps --all --format TEMPLATE` prints.
STUB_DOCKER = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$DOCKER_STUB_LOG"
if [[ "$1 ${2:-}" == "compose version" && -n "${DOCKER_STUB_NO_COMPOSE:-}" ]]; then exit 1; fi
if [[ "$1" == info && -n "${DOCKER_STUB_NO_DAEMON:-}" ]]; then exit 1; fi
if [[ "$1 ${2:-}" == "image inspect" && " ${DOCKER_STUB_MISSING:-} " == *" $3 "* ]]; then
    echo "Error response from daemon: No such image: $3" >&2
    exit 1
fi
if [[ -n "${DOCKER_STUB_FAIL:-}" && "$*" == *"$DOCKER_STUB_FAIL"* ]]; then
    echo "stub: $DOCKER_STUB_FAIL failed" >&2
    exit 1
fi
case "$*" in
"compose "*" config --images") printf '%s' "${DOCKER_STUB_IMAGES:-}" ;;
"compose "*" ps --all --format "*) printf '%s' "${DOCKER_STUB_PS:-}" ;;
"compose "*" ps --all") echo "NAME  SERVICE  STATUS (the ps table)" ;;
"compose "*" logs --no-color "*) echo "the logs (stub)" ;;
esac
exit 0
"""
# The backend health wait in `start` only needs an answer (recorded in the docker log, for order).
STUB_CURL = '#!/usr/bin/env bash\necho "curl $*" >> "$DOCKER_STUB_LOG"\nexit 0\n'
# The host's Python for the native mac worker.
STUB_PYTHON = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$PYTHON_STUB_LOG"
case "$*" in
"-m worker.models.prepare --check") exit 1 ;;
"-m worker.models.prepare") mkdir -p "$MODELS_DIR"; exit 0 ;;
"-m worker.supervisor") env > "$PYTHON_STUB_ENV"; trap 'exit 0' TERM; while :; do sleep 0.1; done ;;
esac
exit 3
"""
PREFIX = f"compose --project-directory {REPO} -f {REPO / 'docker-compose.yml'} --env-file "


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def settings_of(path: Path) -> dict[str, str]:
    """NAME=value lines of a settings file (the last one of a name wins, as in manage.sh)."""
    found = (re.match(r"^([A-Z0-9_]+)=(.*)$", line) for line in path.read_text().splitlines())
    return {match[1]: match[2] for match in found if match}


def chosen_secrets(example: str) -> str:
    """.env.example with a fresh secret in place of each CHANGE-ME: what an operator would have."""
    return re.sub(r"(?m)^([A-Z0-9_]+)=.*CHANGE-ME.*$", lambda m: f"{m[1]}={secrets.token_hex(32)}", example)


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.bin.mkdir()
        _script(self.bin / "docker", STUB_DOCKER)
        self.log = tmp / "docker.log"
        self.envfile = tmp / "stack.env"
        self.envfile.write_text(chosen_secrets((REPO / ".env.example").read_text()))
        self.env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(tmp),
            "DOCKER_STUB_LOG": str(self.log),
            "MANAGE_ENV_FILE": str(self.envfile),
            "COMPOSE_MAC_DIR": str(tmp / "mac"),
            "COMPOSE_STOP_SECONDS": "5",
        }

    def run(self, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        self.log.write_text("")
        return subprocess.run(
            ["bash", str(MANAGE), *args],
            capture_output=True,
            text=True,
            input=stdin if stdin is not None else "",
            env={**self.env, **env},
            cwd=self.tmp,
            timeout=60,
            check=False,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def compose_calls(self) -> list[str]:
        prefix = PREFIX + str(self.envfile) + " "
        found = [line for line in self.calls() if line.startswith("compose --project-directory")]
        assert all(line.startswith(prefix) for line in found), found
        return [line[len(prefix) :] for line in found]


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return Stack(tmp_path)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["stop"], "--profile cpu stop"),
        (["cpu", "stop"], "--profile cpu stop"),
        (["nvidia", "stop"], "--profile nvidia stop"),
        (["amd", "status"], "--profile amd ps --all"),
        (["mac", "status"], "ps --all"),
        (["cpu", "logs"], "--profile cpu logs --follow --tail 200"),
        (["cpu", "logs", "backend"], "--profile cpu logs --follow --tail 200 backend"),
        (["nvidia", "logs", "worker"], "--profile nvidia logs --follow --tail 200 worker-nvidia"),
        (["amd", "logs", "worker", "--since", "10m"], "--profile amd logs --follow --tail 200 --since 10m worker-amd"),
        (["shell-backend"], "--profile cpu exec backend bash"),
        (["cpu", "overview"], "--profile cpu exec -T backend python -m shared.overview"),
        (
            ["mac", "overview", "--json", "--failures", "3"],
            "exec -T backend python -m shared.overview --json --failures 3",
        ),
        (["nvidia", "shell-worker"], "--profile nvidia exec worker-nvidia bash"),
        (["amd", "shell-worker"], "--profile amd exec worker-amd bash"),
        (["cpu", "clean", "--yes"], "--profile cpu down --volumes --remove-orphans"),
        (["mac", "clean", "-y"], "down --volumes --remove-orphans"),
    ],
)
def test_commands_call_compose(stack: Stack, args: list[str], expected: str) -> None:
    done = stack.run(*args)
    assert done.returncode == 0, done.stderr
    assert stack.calls()[:2] == ["compose version", "info"]
    assert stack.compose_calls() == [expected]


@pytest.mark.parametrize("profile", ["cpu", "nvidia"])
def test_start(stack: Stack, profile: str) -> None:
    _script(stack.bin / "curl", STUB_CURL)
    done = stack.run(profile, "start")
    assert done.returncode == 0, done.stderr
    assert stack.compose_calls() == [f"--profile {profile} up --detach --build --remove-orphans"]
    assert "API:           http://localhost:8000" in done.stderr
    assert f"./manage.sh {profile} keys create NAME" in done.stderr
    assert "CHANGE-ME" not in done.stderr and "ENVIRONMENT=local" not in done.stderr


@pytest.mark.parametrize("where", ["environment", "settings file"])
def test_optional_profiles_join_the_hardware_profile(stack: Stack, where: str) -> None:
    """COMPOSE_PROFILES=monitoring: compose ignores the variable once --profile is given."""
    if where == "environment":
        done = stack.run("cpu", "stop", COMPOSE_PROFILES="monitoring, cpu")
    else:
        settings = stack.envfile.read_text().replace("COMPOSE_PROFILES=\n", "COMPOSE_PROFILES=monitoring\n")
        stack.envfile.write_text(settings)
        done = stack.run("cpu", "stop")
    assert done.returncode == 0, done.stderr
    assert stack.compose_calls() == ["--profile cpu --profile monitoring stop"]


def test_restart_stops_then_starts(stack: Stack) -> None:
    _script(stack.bin / "curl", STUB_CURL)
    done = stack.run("cpu", "restart")
    assert done.returncode == 0, done.stderr
    assert stack.compose_calls() == ["--profile cpu stop", "--profile cpu up --detach --build --remove-orphans"]


def test_amd_start_needs_the_rocm_devices(stack: Stack) -> None:
    if Path("/dev/kfd").exists():
        pytest.skip("this host has /dev/kfd")
    done = stack.run("amd", "start")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "error: /dev/kfd not found: the amdgpu kernel driver (ROCm) is not loaded on this host"
    )
    assert stack.compose_calls() == []


def test_mac_runs_the_services_in_docker_and_the_worker_natively(stack: Stack, tmp_path: Path) -> None:
    _script(stack.bin / "curl", STUB_CURL)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    _script(venv / "bin" / "python", STUB_PYTHON)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("")
    env = {
        "VENV_DIR": str(venv),
        "MANAGE_SKIP_INSTALL": "true",
        "MANAGE_REQUIREMENTS": str(requirements),
        "MODELS_DIR": str(tmp_path / "models"),
        "PYTHON_STUB_LOG": str(tmp_path / "python.log"),
        "PYTHON_STUB_ENV": str(tmp_path / "worker.env"),
    }
    done = stack.run("mac", "start", **env)
    try:
        assert done.returncode == 0, done.stderr
        assert stack.compose_calls() == ["up --detach --build --remove-orphans"]  # no worker container
        pid = int((tmp_path / "mac" / "worker.pid").read_text())
        for _ in range(50):
            if (tmp_path / "worker.env").exists():
                break
            time.sleep(0.1)
        worker_env = dict(
            line.split("=", 1) for line in (tmp_path / "worker.env").read_text().splitlines() if "=" in line
        )
        assert worker_env["DEVICE"] == "mps"
        assert worker_env["REDIS_URL"] == "redis://127.0.0.1:6379/0"
        assert worker_env["S3_ENDPOINT_URL"] == "http://127.0.0.1:9000"
        assert worker_env["S3_ACCESS_KEY"] == "dance-admin"
        # The container's rules: production, keys, the settings file's secrets.
        written = settings_of(stack.envfile)
        assert worker_env["ENVIRONMENT"] == "production" and worker_env["API_AUTH"] == "keys"
        assert worker_env["SECRET_KEY"] == written["SECRET_KEY"]
        assert worker_env["S3_SECRET_KEY"] == written["MINIO_ROOT_PASSWORD"]
        assert worker_env["MODELS_DIR"] == str(tmp_path / "models")
        assert (tmp_path / "python.log").read_text().splitlines() == [
            "-m worker.models.prepare --check",
            "-m worker.models.prepare",
            "-m worker.supervisor",  # restarts the worker when it dies
        ]

        status = stack.run("mac", "status", **env)
        assert f"native worker: running (pid {pid})" in status.stdout

        stopped = stack.run("mac", "stop", **env)
        assert stopped.returncode == 0, stopped.stderr
        assert stack.compose_calls() == ["stop"]
        assert not (tmp_path / "mac" / "worker.pid").exists()
        time.sleep(0.2)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        pidfile = tmp_path / "mac" / "worker.pid"
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_mac_has_no_worker_container(stack: Stack) -> None:
    done = stack.run("mac", "shell-worker")
    assert done.returncode != 0
    assert "runs the worker natively" in done.stderr


def test_clean_asks_for_confirmation(stack: Stack) -> None:
    done = stack.run("cpu", "clean")  # stdin is not a terminal
    assert done.returncode != 0
    assert done.stderr.strip() == "error: clean deletes every stored video and result: re-run with --yes to confirm"
    assert stack.compose_calls() == []


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"DOCKER_STUB_NO_COMPOSE": "1"}, "error: the Docker Compose plugin is missing"),
        ({"DOCKER_STUB_NO_DAEMON": "1"}, "error: cannot reach the Docker daemon"),
    ],
)
def test_docker_problems_are_one_clear_line(stack: Stack, env: dict[str, str], line: str) -> None:
    done = stack.run("cpu", "start", **env)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(line)
    assert stack.compose_calls() == []


def test_missing_docker(stack: Stack) -> None:
    # A PATH with every program of /usr/bin and /bin but docker (CI installs docker.io there).
    (stack.bin / "docker").unlink()
    for folder in (Path("/usr/bin"), Path("/bin")):
        for program in folder.iterdir():
            link = stack.bin / program.name
            if not program.name.startswith("docker") and not link.exists():
                link.symlink_to(program)
    done = stack.run("cpu", "status", PATH=str(stack.bin))
    assert done.returncode != 0
    assert done.stderr.strip() == (
        "error: docker not found on PATH: install Docker Engine (Linux) or Docker Desktop (macOS)"
    )


def _compose_files(call: str) -> list[str]:
    """The -f files of one recorded `docker compose` call, in order."""
    words = call.split()
    assert words[:3] == ["compose", "--project-directory", str(REPO)], call
    return [words[i + 1] for i, word in enumerate(words) if word == "-f"]


@pytest.fixture
def overrides(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "mirror.yml", tmp_path / "standins.yml"
    for path in (first, second):
        path.write_text("services: {}\n")
    return first, second


def test_compose_file_from_the_environment_replaces_the_default(stack: Stack, overrides: tuple[Path, Path]) -> None:
    """docker compose's own convention: a ':' list, relative paths from the project directory."""
    first, second = overrides
    done = stack.run("cpu", "stop", COMPOSE_FILE=f"docker-compose.yml:{first}:{second}")
    assert done.returncode == 0, done.stderr
    [call] = [line for line in stack.calls() if line.startswith("compose ")][1:]
    assert _compose_files(call) == [str(REPO / "docker-compose.yml"), str(first), str(second)]
    assert call.endswith(f" --env-file {stack.envfile} --profile cpu stop")


def test_compose_file_from_the_settings_file(stack: Stack, overrides: tuple[Path, Path]) -> None:
    first, second = overrides
    with stack.envfile.open("a") as settings:
        settings.write(f"COMPOSE_PATH_SEPARATOR=;\nCOMPOSE_FILE={first};{second}\n")
    done = stack.run("mac", "status")
    assert done.returncode == 0, done.stderr
    [call] = [line for line in stack.calls() if line.startswith("compose ")][1:]
    assert _compose_files(call) == [str(first), str(second)]  # no docker-compose.yml: it is replaced
    assert call.endswith(" ps --all")


@pytest.mark.parametrize(
    "args",
    [
        ["cpu", "-f", "mirror.yml", "stop", "-f", "standins.yml"],
        ["cpu", "stop", "-f", "mirror.yml", "--file", "standins.yml"],
        ["cpu", "--file=mirror.yml", "stop", "--file=standins.yml"],
        ["cpu", "logs", "-f", "--file", "mirror.yml", "worker", "--file=standins.yml"],
    ],
)
def test_extra_files_before_or_after_the_command(stack: Stack, overrides: tuple[Path, Path], args: list[str]) -> None:
    """-f files come after docker-compose.yml, relative to the caller's directory (the stack's tmp dir)."""
    first, second = overrides
    done = stack.run(*args)
    assert done.returncode == 0, done.stderr
    [call] = [line for line in stack.calls() if line.startswith("compose ")][1:]
    assert _compose_files(call) == [str(REPO / "docker-compose.yml"), str(first), str(second)]
    expected = "logs --follow --tail 200 worker-cpu" if "logs" in args else "stop"
    assert call.endswith(f" --profile cpu {expected}")


def test_extra_files_follow_compose_file(stack: Stack, overrides: tuple[Path, Path]) -> None:
    first, second = overrides
    done = stack.run("nvidia", "stop", "-f", str(second), COMPOSE_FILE=str(first))
    assert done.returncode == 0, done.stderr
    [call] = [line for line in stack.calls() if line.startswith("compose ")][1:]
    assert _compose_files(call) == [str(first), str(second)]


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (["cpu", "start", "-f", "no-such.yml"], {}, "error: compose file not found: no-such.yml"),
        (["cpu", "--file=../gone.yml", "status"], {}, "error: compose file not found: ../gone.yml"),
        (["cpu", "stop", "-f"], {}, "error: -f needs a compose file"),
        (
            ["cpu", "status"],
            {"COMPOSE_FILE": "docker-compose.yml:docker/absent.yml"},
            f"error: compose file not found: {REPO / 'docker/absent.yml'} (from COMPOSE_FILE=",
        ),
    ],
)
def test_a_missing_compose_file_is_named(stack: Stack, args: list[str], env: dict[str, str], line: str) -> None:
    done = stack.run(*args, **env)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(line)
    assert stack.calls() == []


CPU_IMAGES = "dance/backend:latest\nredis:7.4-alpine\ndance/backend:latest\ndance/worker-cpu:latest\nminio/minio:x\n"


@pytest.mark.parametrize(
    ("args", "settings", "env"),
    [
        (["cpu", "start", "--no-build"], "", {}),
        (["cpu", "--no-build", "start"], "", {}),
        (["cpu", "start"], "COMPOSE_NO_BUILD=true\n", {}),
        (["cpu", "start"], "", {"COMPOSE_NO_BUILD": "yes"}),
    ],
)
def test_no_build_checks_the_images_then_starts_without_building(
    stack: Stack, args: list[str], settings: str, env: dict[str, str]
) -> None:
    _script(stack.bin / "curl", STUB_CURL)
    with stack.envfile.open("a") as file:
        file.write(settings)
    done = stack.run(*args, DOCKER_STUB_IMAGES=CPU_IMAGES, **env)
    assert done.returncode == 0, done.stderr
    assert [line for line in stack.calls() if line.startswith("image ")] == [
        "image inspect dance/backend:latest",
        "image inspect dance/worker-cpu:latest",
        "image inspect minio/minio:x",
        "image inspect redis:7.4-alpine",
    ]
    assert stack.compose_calls() == [
        "--profile cpu config --images",
        "--profile cpu up --detach --no-build --remove-orphans",
    ]


def test_the_environment_overrides_no_build_in_the_settings_file(stack: Stack) -> None:
    _script(stack.bin / "curl", STUB_CURL)
    with stack.envfile.open("a") as file:
        file.write("COMPOSE_NO_BUILD=true\n")
    done = stack.run("cpu", "start", COMPOSE_NO_BUILD="false")
    assert done.returncode == 0, done.stderr
    assert stack.compose_calls() == ["--profile cpu up --detach --build --remove-orphans"]


def test_no_build_refuses_and_lists_the_missing_images(stack: Stack) -> None:
    done = stack.run(
        "cpu",
        "start",
        "--no-build",
        DOCKER_STUB_IMAGES=CPU_IMAGES,
        DOCKER_STUB_MISSING="dance/worker-cpu:latest redis:7.4-alpine",
    )
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    start = lines.index("error: --no-build, and 2 image(s) the cpu profile needs are not on this machine:")
    assert lines[start + 1 : start + 3] == [
        "  dance/worker-cpu:latest   built from this repository: ./manage.sh cpu build",
        "  redis:7.4-alpine   docker pull redis:7.4-alpine (from your registry or mirror)",
    ]
    assert "docker load -i ARCHIVE" in done.stderr
    assert "./manage.sh cpu build, or bring images built" in done.stderr
    assert stack.compose_calls() == ["--profile cpu config --images"]  # nothing started


def test_restart_with_missing_images_leaves_the_stack_running(stack: Stack) -> None:
    done = stack.run(
        "cpu", "restart", "--no-build", DOCKER_STUB_IMAGES=CPU_IMAGES, DOCKER_STUB_MISSING="dance/backend:latest"
    )
    assert done.returncode != 0
    assert "  dance/backend:latest   built from this repository" in done.stderr
    assert stack.compose_calls() == ["--profile cpu config --images"]  # no stop


def test_no_build_reads_the_images_from_the_merged_compose_files(
    stack: Stack, compose: list[str], tmp_path: Path
) -> None:
    """The real Compose binary merges docker-compose.yml, the -f file and IMAGE_PREFIX; every image is missing."""
    real = " ".join(shlex.quote(word) for word in compose)
    _script(
        stack.bin / "docker",
        "#!/usr/bin/env bash\n"
        'printf \'%s\\n\' "$*" >> "$DOCKER_STUB_LOG"\n'
        'case "$1 ${2:-}" in\n'
        '"compose version" | info*) exit 0 ;;\n'
        f'compose*) shift; exec {real} "$@" ;;\n'
        '"image inspect") exit 1 ;;\n'
        "esac\n"
        "exit 0\n",
    )
    mirror = tmp_path / "mirror.yml"
    mirror.write_text("services:\n  redis:\n    image: registry.example/library/redis:7.4-alpine\n")
    with stack.envfile.open("a") as file:
        file.write("IMAGE_PREFIX=registry.example/dance\n")
    done = stack.run("nvidia", "start", "--no-build", "-f", str(mirror))
    assert done.returncode != 0
    listed = {line.split()[0]: line for line in done.stderr.splitlines() if line.startswith("  ")}
    assert "registry.example/library/redis:7.4-alpine" in listed  # the -f file's image, not the default
    assert not [image for image in listed if image.startswith("redis:")]
    assert "registry.example/dance/backend:latest" in listed  # IMAGE_PREFIX from the settings file
    workers = [image for image in listed if "/worker-" in image]
    assert workers == ["registry.example/dance/worker-nvidia:latest"]  # the nvidia profile's worker only
    for image, line in listed.items():
        built = image.startswith("registry.example/dance/")
        assert line.endswith("built from this repository: ./manage.sh nvidia build") == built, line
    assert not [line for line in stack.calls() if " up " in line]


def test_start_wait_waits_for_every_service_then_the_api(stack: Stack) -> None:
    _script(stack.bin / "curl", STUB_CURL)
    with stack.envfile.open("a") as file:
        file.write("COMPOSE_WAIT_SECONDS=42\n")
    done = stack.run("cpu", "start", "--wait")
    assert done.returncode == 0, done.stderr
    assert stack.compose_calls() == ["--profile cpu up --detach --build --wait --wait-timeout 42 --remove-orphans"]
    # The API's health is still the last check.
    assert stack.calls()[-2:] == [
        PREFIX + f"{stack.envfile} --profile cpu up --detach --build --wait --wait-timeout 42 --remove-orphans",
        "curl -fsS -o /dev/null --max-time 5 http://localhost:8000/health",
    ]


def test_start_wait_failure_shows_ps_and_the_logs_of_the_unhealthy(stack: Stack) -> None:
    _script(stack.bin / "curl", STUB_CURL)
    ps = (
        "redis|running|healthy|0\n"
        "create-bucket|exited||0\n"  # a one-shot that finished
        "minio|running|healthy|0\n"
        "backend|running|unhealthy|0\n"
        "worker-cpu|restarting||1\n"
        "rq-dashboard|running|starting|0\n"
        "worker-cpu|restarting||1\n"
    )
    done = stack.run(
        "cpu", "start", "--no-build", "--wait", DOCKER_STUB_FAIL=" up ", DOCKER_STUB_PS=ps, COMPOSE_WAIT_SECONDS="7"
    )
    assert done.returncode == 1
    assert stack.compose_calls() == [
        "--profile cpu config --images",
        "--profile cpu up --detach --no-build --wait --wait-timeout 7 --remove-orphans",
        "--profile cpu ps --all",
        "--profile cpu ps --all --format {{.Service}}|{{.State}}|{{.Health}}|{{.ExitCode}}",
        "--profile cpu logs --no-color --tail 50 backend worker-cpu rq-dashboard",
    ]
    assert "error: docker compose up --wait failed: not every service became healthy in 7 s" in done.stderr
    assert "NAME  SERVICE  STATUS (the ps table)" in done.stderr
    assert "the last 50 log lines of backend worker-cpu rq-dashboard:\nthe logs (stub)" in done.stderr
    assert not any(call.startswith("curl ") for call in stack.calls())  # no API wait after a failure


def test_start_wait_failure_without_a_culprit_shows_every_log(stack: Stack) -> None:
    done = stack.run("mac", "start", "--wait", DOCKER_STUB_FAIL=" up ", DOCKER_STUB_PS="redis|running|healthy|0\n")
    assert done.returncode == 1
    assert stack.compose_calls()[-1] == "logs --no-color --tail 50"
    assert "the last 50 log lines of every service:" in done.stderr


@pytest.mark.parametrize("seconds", ["soon", "0", "-5"])
def test_a_bad_wait_is_refused_before_anything_runs(stack: Stack, seconds: str) -> None:
    done = stack.run("cpu", "restart", "--wait", COMPOSE_WAIT_SECONDS=seconds)
    assert done.returncode != 0
    assert done.stderr.strip() == f"error: COMPOSE_WAIT_SECONDS must be a number of seconds, not '{seconds}'"
    assert stack.compose_calls() == []


def test_the_registry_mirror_example_of_the_docs_covers_every_image(compose: list[str], tmp_path: Path) -> None:
    """docs/docker.md's mirror.yml, merged by the real Compose: no image and no build base left on Docker Hub."""
    docs = (REPO / "docs" / "docker.md").read_text()
    example = docs[docs.index("# mirror.yml") : docs.index("```", docs.index("# mirror.yml"))]
    mirror = tmp_path / "mirror.yml"
    mirror.write_text(example)
    settings = tmp_path / "stack.env"
    shutil.copy(REPO / ".env.example", settings)
    project = ["--project-directory", str(REPO), "--env-file", str(settings), "--profile", "cpu"]
    files = ["-f", str(REPO / "docker-compose.yml"), "-f", str(mirror)]
    done = subprocess.run(
        [*compose, *project, *files, "config", "--format", "json"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert {"redis", "minio", "backend", "worker-cpu"} <= set(services)
    for name, service in services.items():
        if "build" in service:
            assert service["build"]["args"]["PYTHON_IMAGE"].startswith("registry.example.com/"), name
        else:  # pulled, unless it is one of the images built here
            image = service["image"]
            assert image.startswith("registry.example.com/") or image.startswith("dance/"), (name, image)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["cpu", "build"], "--profile cpu build"),
        (["nvidia", "build", "worker", "backend"], "--profile nvidia build worker-nvidia backend"),
        (["amd", "build", "--no-cache", "worker-amd"], "--profile amd build --no-cache worker-amd"),
        (["mac", "build"], "build"),
    ],
)
def test_build_only_builds(stack: Stack, args: list[str], expected: str) -> None:
    done = stack.run(*args)
    assert done.returncode == 0, done.stderr
    assert stack.compose_calls() == [expected]
    assert f"./manage.sh {args[0]} start --no-build" in done.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["cpu", "build", "--pull"], "error: build: unknown option '--pull' (build [--no-cache] [SERVICE...])"),
        (["mac", "build", "worker"], "error: profile mac has no worker image: its worker runs natively"),
        (["cpu", "start", "--detach"], "error: start: unknown argument '--detach'"),
        (["cpu", "restart", "now"], "error: restart: unknown argument 'now'"),
    ],
)
def test_bad_build_and_start_arguments(stack: Stack, args: list[str], line: str) -> None:
    done = stack.run(*args)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(line), done.stderr
    assert stack.compose_calls() == []


@pytest.mark.parametrize("where", ["environment", "settings file"])
def test_docker_cli_names_the_client(stack: Stack, tmp_path: Path, where: str) -> None:
    """Every docker call, the checks included, goes to DOCKER_CLI and none to the docker on PATH."""
    client = tmp_path / "other" / "docker-client"
    client.parent.mkdir()
    (stack.bin / "docker").rename(client)
    _script(stack.bin / "docker", '#!/usr/bin/env bash\necho "docker from PATH" >> "$DOCKER_STUB_LOG"\nexit 97\n')
    env = {}
    if where == "environment":
        env["DOCKER_CLI"] = str(client)
    else:
        with stack.envfile.open("a") as settings:
            settings.write(f"DOCKER_CLI={client}\n")
    _script(stack.bin / "curl", STUB_CURL)
    done = stack.run("nvidia", "start", **env)
    assert done.returncode == 0, done.stderr
    assert "docker from PATH" not in stack.calls()
    assert stack.calls()[:3] == ["compose version", "info", "info --format {{json .Runtimes}}"]
    assert stack.compose_calls() == ["--profile nvidia up --detach --build --remove-orphans"]


def test_docker_cli_that_does_not_exist(stack: Stack, tmp_path: Path) -> None:
    done = stack.run("cpu", "status", DOCKER_CLI=str(tmp_path / "no-docker"))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"error: DOCKER_CLI={tmp_path / 'no-docker'}: no such program"
        " (set DOCKER_CLI to a docker client, or unset it to use docker from PATH)"
    ]
    assert stack.calls() == []


def test_missing_env_file(stack: Stack) -> None:
    stack.envfile.unlink()
    done = stack.run("amd", "start")
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"error: {stack.envfile} not found: run ./manage.sh amd init (writes it from .env.example with fresh secrets)"
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["cpu", "frobnicate"], "error: unknown command 'frobnicate' (one of: init start stop restart status logs"),
        (["gpu", "start"], "error: unknown profile 'gpu'"),
        (["cpu", "test-upload"], "error: usage: ./manage.sh PROFILE test-upload FILE"),
        (["cpu", "test-upload", "/no/such/video.mp4"], "error: no such file: /no/such/video.mp4"),
        (["cpu", "clean", "--force"], "error: clean: unknown option '--force'"),
    ],
)
def test_bad_input_is_one_clear_line(stack: Stack, args: list[str], line: str) -> None:
    done = stack.run(*args)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(line)
    assert stack.compose_calls() == []


def test_help_lists_every_docker_command(stack: Stack) -> None:
    listed = subprocess.run(
        ["bash", "-c", f"source {REPO}/scripts/manage/compose.sh; printf '%s\\n' \"${{COMPOSE_COMMANDS[@]}}\""],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"build", "overview", "start"} <= set(listed)
    done = stack.run("help")
    assert done.returncode == 0, done.stderr
    docker_part = done.stdout[done.stdout.index("Docker commands:") :]
    described = {line.split()[0] for line in docker_part.splitlines() if line.startswith("  ") and line[2] != " "}
    assert set(listed) <= described, set(listed) - described


def test_unknown_profile_through_compose_main(stack: Stack) -> None:
    """manage.sh reads an unknown first word as a command; compose_main itself names the profile."""
    script = (
        f"set -euo pipefail; MANAGE_ROOT={REPO}; source {REPO}/scripts/manage/common.sh; "
        f"source {REPO}/scripts/manage/compose.sh; compose_main gpu start"
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=stack.env, check=False)
    assert done.returncode != 0
    assert done.stderr.strip() == "error: unknown profile 'gpu' (one of: cpu nvidia amd mac)"


def test_urls_are_printed_without_docker(stack: Stack) -> None:
    (stack.bin / "docker").unlink()
    with stack.envfile.open("a") as env:
        env.write("RQ_DASHBOARD_PORT=19181\n")
    dashboard = stack.run("rq-dashboard")
    assert dashboard.returncode == 0
    assert dashboard.stdout.strip() == "http://127.0.0.1:19181"
    console = stack.run("amd", "minio-console")
    assert console.stdout.strip() == "http://localhost:9001"


class FakeAPI(JsonHandler):
    polls = 0
    # The Authorization header of every request, in order; with `required`, others get 401.
    seen: ClassVar[list[str | None]] = []
    required: ClassVar[str | None] = None

    def _authorized(self) -> bool:
        FakeAPI.seen.append(self.headers.get("Authorization"))
        if FakeAPI.required is None or self.headers.get("Authorization") == f"Bearer {FakeAPI.required}":
            return True
        self._json(401, {"error": {"code": "UNAUTHORIZED", "message": "an API key is needed"}})
        return False

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        if not self._authorized():
            return
        ok = self.path == "/analyze" and b'name="file"' in body and b"not really a video" in body
        self._json(202 if ok else 400, {"job_id": "job123", "status": "queued", "status_url": "/jobs/job123"})

    def do_GET(self) -> None:
        if not self._authorized():
            return
        FakeAPI.polls += 1
        done = FakeAPI.polls >= 2
        self._json(
            200,
            {
                "job_id": "job123",
                "status": "succeeded" if done else "running",
                "stage": "uploading" if done else "analyzing",
                "progress": 1.0 if done else 0.5,
                "frames_done": 10 if done else 5,
                "frames_total": 10,
                "results": {"poses.json": "http://localhost:9000/x/poses.json"} if done else {},
            },
        )


@pytest.fixture
def api() -> Iterator[int]:
    FakeAPI.polls = 0
    FakeAPI.seen = []
    FakeAPI.required = None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_test_upload_posts_the_file_and_follows_the_job(stack: Stack, api: int, tmp_path: Path) -> None:
    if shutil.which("curl", path="/usr/bin:/bin") is None:
        pytest.skip("curl is not installed")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    with stack.envfile.open("a") as env:
        env.write(f"BACKEND_PORT={api}\n")
    done = stack.run("cpu", "test-upload", str(video))
    assert done.returncode == 0, done.stderr
    assert "job job123" in done.stdout
    assert "poses.json" in done.stdout and "http://localhost:9000/x/poses.json" in done.stdout
    assert stack.calls() == []  # no docker needed to talk to the API
    assert FakeAPI.seen and set(FakeAPI.seen) == {None}  # no key given, none sent


@pytest.mark.parametrize("where", ["option", "option=", "environment", "settings file"])
def test_test_upload_sends_the_api_key_on_every_call(stack: Stack, api: int, tmp_path: Path, where: str) -> None:
    if shutil.which("curl", path="/usr/bin:/bin") is None:
        pytest.skip("curl is not installed")
    key = "dak_0123456789ab_" + "k" * 43
    FakeAPI.required = key
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    with stack.envfile.open("a") as env:
        env.write(f"BACKEND_PORT={api}\n")
        if where == "settings file":
            env.write(f"API_KEY={key}\n")
    args, extra = ["cpu", "test-upload", str(video)], {}
    if where == "option":
        args += ["--key", key]
    elif where == "option=":
        args += [f"--key={key}"]
    elif where == "environment":
        extra = {"API_KEY": key}
    done = stack.run(*args, **extra)
    assert done.returncode == 0, done.stderr
    assert "job job123" in done.stdout
    assert len(FakeAPI.seen) >= 3 and set(FakeAPI.seen) == {f"Bearer {key}"}  # the upload and every poll


def test_test_upload_without_a_key_says_how_to_get_one(stack: Stack, api: int, tmp_path: Path) -> None:
    if shutil.which("curl", path="/usr/bin:/bin") is None:
        pytest.skip("curl is not installed")
    FakeAPI.required = "dak_0123456789ab_" + "k" * 43
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    with stack.envfile.open("a") as env:
        env.write(f"BACKEND_PORT={api}\n")
    done = stack.run("cpu", "test-upload", str(video), "--key", "dak_wrong")
    assert done.returncode != 0
    assert "error: upload rejected, HTTP 401: UNAUTHORIZED: an API key is needed" in done.stderr
    assert "./manage.sh PROFILE keys create NAME" in done.stderr
    assert FakeAPI.seen == ["Bearer dak_wrong"]


# --- production refuses secrets no one chose -------------------------------------------------


def _set(stack: Stack, **values: str) -> None:
    """Settings appended to the stack's file: the last line of a name wins (manage.sh and Compose)."""
    with stack.envfile.open("a") as file:
        file.write("".join(f"{name}={value}\n" for name, value in values.items()))


def _refusal(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The offending settings start lists, one a line."""
    lines = done.stderr.splitlines()
    head = [i for i, line in enumerate(lines) if line.startswith("error: refusing to start: ENVIRONMENT=production")]
    assert head, done.stderr
    return [line.strip() for line in lines[head[0] + 1 :] if line.startswith("  ")]


@pytest.mark.parametrize("command", ["start", "restart"])
def test_start_refuses_the_example_s_change_me_secrets(stack: Stack, command: str) -> None:
    """.env.example as copied, untouched: nothing is built, stopped or started, and every secret is named."""
    _script(stack.bin / "curl", STUB_CURL)
    shutil.copy(REPO / ".env.example", stack.envfile)
    done = stack.run("cpu", command, "--wait")
    assert done.returncode == 1
    assert _refusal(done) == [
        "MINIO_ROOT_PASSWORD is a CHANGE-ME placeholder",
        "RQ_DASHBOARD_PASSWORD is a CHANGE-ME placeholder",
        "SECRET_KEY is a CHANGE-ME placeholder",
        "METRICS_TOKEN is a CHANGE-ME placeholder",
    ]
    assert str(stack.envfile) in done.stderr
    assert "./manage.sh cpu init" in done.stderr and "openssl rand -hex 32" in done.stderr
    assert stack.compose_calls() == []  # no up, no stop, no build
    assert not [call for call in stack.calls() if " up " in call or call.startswith("curl ")]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"MINIO_ROOT_PASSWORD": "minioadmin"}, ["MINIO_ROOT_PASSWORD is a well-known default"]),
        ({"RQ_DASHBOARD_PASSWORD": "Admin"}, ["RQ_DASHBOARD_PASSWORD is a well-known default"]),
        ({"RQ_DASHBOARD_PASSWORD": ""}, ["RQ_DASHBOARD_PASSWORD is empty"]),
        ({"SECRET_KEY": "  "}, ["SECRET_KEY is empty"]),
        ({"SECRET_KEY": "0123456789abcdef"}, ["SECRET_KEY is shorter than 32 characters"]),
        ({"SECRET_KEY": '"my-changeme-secret-that-is-long-enough"'}, ["SECRET_KEY is a CHANGE-ME placeholder"]),
        ({"METRICS_TOKEN": "secret"}, ["METRICS_TOKEN is a well-known default"]),
        (
            {"API_AUTH": "open", "MINIO_ROOT_PASSWORD": "CHANGE-ME-at-least-8-chars"},
            [
                "MINIO_ROOT_PASSWORD is a CHANGE-ME placeholder",
                "API_AUTH=open: anyone who reaches the API may read, cancel and delete every job",
            ],
        ),
    ],
)
def test_start_names_each_offending_setting(stack: Stack, values: dict[str, str], expected: list[str]) -> None:
    _set(stack, **values)
    done = stack.run("nvidia", "start")
    assert done.returncode == 1
    assert _refusal(done) == expected
    assert stack.compose_calls() == []


def test_the_environment_is_read_before_the_settings_file(stack: Stack) -> None:
    """As Compose does: a secret exported in the shell replaces the file's placeholder, and vice versa."""
    _script(stack.bin / "curl", STUB_CURL)
    _set(stack, SECRET_KEY="CHANGE-ME")
    done = stack.run("cpu", "start", SECRET_KEY=secrets.token_hex(32))
    assert done.returncode == 0, done.stderr
    assert stack.compose_calls() == ["--profile cpu up --detach --build --remove-orphans"]
    done = stack.run("cpu", "start", MINIO_ROOT_PASSWORD="CHANGE-ME", SECRET_KEY=secrets.token_hex(32))
    assert _refusal(done) == ["MINIO_ROOT_PASSWORD is a CHANGE-ME placeholder"]


def test_an_empty_metrics_token_is_allowed_but_not_for_prometheus(stack: Stack) -> None:
    """METRICS_TOKEN is optional (admin keys read /metrics), but Prometheus authenticates with it."""
    _script(stack.bin / "curl", STUB_CURL)
    _set(stack, METRICS_TOKEN="")
    done = stack.run("cpu", "start")
    assert done.returncode == 0, done.stderr
    done = stack.run("cpu", "start", COMPOSE_PROFILES="monitoring")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: COMPOSE_PROFILES has monitoring and METRICS_TOKEN is empty"), done.stderr
    assert stack.compose_calls() == []


def test_local_warns_and_an_open_api_stays_on_loopback(stack: Stack) -> None:
    """ENVIRONMENT=local is for a machine no one else reaches: findings are warnings, and open means loopback."""
    _script(stack.bin / "curl", STUB_CURL)
    _set(stack, ENVIRONMENT="local", API_AUTH="open", RQ_DASHBOARD_PASSWORD="CHANGE-ME")
    done = stack.run("cpu", "start")
    assert done.returncode == 0, done.stderr
    assert "warning: ENVIRONMENT=local: RQ_DASHBOARD_PASSWORD is a CHANGE-ME placeholder" in done.stderr
    assert "warning: THE API IS OPEN (API_AUTH=open)" in done.stderr
    assert "keys create" not in done.stderr
    assert stack.compose_calls() == ["--profile cpu up --detach --build --remove-orphans"]

    done = stack.run("cpu", "start", BIND_ADDRESS="0.0.0.0")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: API_AUTH=open with BIND_ADDRESS=0.0.0.0: an open API is for this machine only (BIND_ADDRESS=127.0.0.1)"
    )
    assert stack.compose_calls() == []


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"ENVIRONMENT": "Production"}, "error: ENVIRONMENT must be production or local, not 'Production'"),
        ({"API_AUTH": "none"}, "error: API_AUTH must be keys or open, not 'none'"),
    ],
)
def test_unknown_modes_are_refused(stack: Stack, values: dict[str, str], line: str) -> None:
    _set(stack, **values)
    done = stack.run("cpu", "start")
    assert done.returncode == 1
    assert done.stderr.strip() == line
    assert stack.compose_calls() == []


def _bash_placeholder_reason(values: list[str]) -> list[str]:
    script = (
        f"set -euo pipefail; MANAGE_ROOT={REPO}; source {REPO}/scripts/manage/common.sh; "
        f"source {REPO}/scripts/manage/compose.sh; "
        'for v in "$@"; do printf "%s|\\n" "$(_compose_placeholder_reason "$v")"; done'
    )
    done = subprocess.run(["bash", "-c", script, "bash", *values], capture_output=True, text=True, check=True)
    return [line.removesuffix("|") for line in done.stdout.splitlines()]


def test_manage_sh_and_the_settings_refuse_the_same_secrets() -> None:
    """The shell's rule is shared/settings.py's is_placeholder_secret: same list, same answers."""
    listed = subprocess.run(
        ["bash", "-c", f"source {REPO}/scripts/manage/compose.sh; printf '%s\\n' \"${{_COMPOSE_DEFAULT_SECRETS[@]}}\""],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(listed) == sorted(_KNOWN_DEFAULT_SECRETS)
    samples = [
        "", " ", "CHANGE-ME", "CHANGE-ME-at-least-8-chars", "my-ChangeMe", "MinioAdmin", " admin ", "password",
        "Secret", "changethis", "passwords", "admin2", "smoke-password-0123456789", secrets.token_hex(32),
    ]  # fmt: skip
    refused = [bool(reason) for reason in _bash_placeholder_reason(samples)]
    assert refused == [is_placeholder_secret(value) for value in samples]


# --- init: a settings file with fresh secrets -----------------------------------------------


def test_init_writes_fresh_secrets_that_start_and_the_settings_accept(stack: Stack) -> None:
    _script(stack.bin / "curl", STUB_CURL)
    stack.envfile.unlink()
    done = stack.run("init")
    assert done.returncode == 0, done.stderr
    assert stack.calls() == []  # no docker needed
    assert stack.envfile.stat().st_mode & 0o777 == 0o600
    written = settings_of(stack.envfile)
    example = settings_of(REPO / ".env.example")
    filled = {name for name, value in example.items() if "CHANGE-ME" in value}
    assert filled == {"MINIO_ROOT_PASSWORD", "RQ_DASHBOARD_PASSWORD", "SECRET_KEY", "METRICS_TOKEN"}
    for name in filled:
        assert re.fullmatch(r"[0-9a-f]{64}", written[name]), name
    assert len({written[name] for name in filled}) == len(filled)  # each its own
    assert {name: value for name, value in written.items() if name not in filled} == {
        name: value for name, value in example.items() if name not in filled
    }
    values = [line for line in stack.envfile.read_text().splitlines() if not line.startswith("#")]
    assert not [line for line in values if "CHANGE-ME" in line]
    assert f"wrote {stack.envfile} (mode 600) with fresh" in done.stderr
    assert not [word for word in done.stderr.split() if word in written.values() and len(word) == 64]  # not printed

    # The containers' own rule accepts them, as ENVIRONMENT=production runs it.
    Settings(
        environment="production",
        api_auth=written["API_AUTH"],
        s3_secret_key=written["MINIO_ROOT_PASSWORD"],
        secret_key=written["SECRET_KEY"],
        metrics_token=written["METRICS_TOKEN"],
        rq_dashboard_password=written["RQ_DASHBOARD_PASSWORD"],
        _env_file=None,
    )
    assert written["ENVIRONMENT"] == "production" and written["API_AUTH"] == "keys"

    started = stack.run("cpu", "start")
    assert started.returncode == 0, started.stderr
    assert stack.compose_calls() == ["--profile cpu up --detach --build --remove-orphans"]


def test_init_keeps_an_existing_file_unless_forced(stack: Stack) -> None:
    before = stack.envfile.read_text()
    done = stack.run("cpu", "init")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: {stack.envfile} exists: not replacing it (its secrets are in use);"
        " --force replaces it and keeps a backup"
    )
    assert stack.envfile.read_text() == before

    done = stack.run("cpu", "init", "--force")
    assert done.returncode == 0, done.stderr
    [backup] = stack.tmp.glob("stack.env.bak-*")
    assert backup.read_text() == before and backup.stat().st_mode & 0o777 == 0o600
    assert f"the old file is {backup}" in done.stderr
    assert settings_of(stack.envfile)["SECRET_KEY"] != settings_of(backup)["SECRET_KEY"]
    assert not list(stack.tmp.glob(".env.init.*"))  # no temporary file left

    done = stack.run("cpu", "init", "--yes")
    assert done.returncode == 1
    assert done.stderr.strip() == "error: init: unknown argument '--yes' (init [--force])"


# --- keys: the API keys, inside the backend container ---------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["cpu", "keys", "create", "smoke", "--admin", "--json"], "create smoke --admin --json"),
        (["nvidia", "keys", "create", "--admin", "studio app"], "create --admin studio app"),
        (["cpu", "keys", "list"], "list"),
        (["amd", "keys", "list", "--json"], "list --json"),
        (["cpu", "keys", "revoke", "0123456789ab"], "revoke 0123456789ab"),
    ],
)
def test_keys_run_inside_the_backend_container(stack: Stack, args: list[str], expected: str) -> None:
    done = stack.run(*args)
    assert done.returncode == 0, done.stderr
    assert stack.compose_calls() == [f"--profile {args[0]} exec -T backend python -m shared.apikeys {expected}"]


def test_keys_on_mac_and_with_placeholder_secrets(stack: Stack) -> None:
    """keys reaches the running stack whatever the settings file holds: only start checks it."""
    shutil.copy(REPO / ".env.example", stack.envfile)
    done = stack.run("mac", "keys", "list")
    assert done.returncode == 0, done.stderr
    assert stack.compose_calls() == ["exec -T backend python -m shared.apikeys list"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["cpu", "keys"], "error: usage: ./manage.sh cpu keys create NAME [--admin] [--json] | keys list"),
        (["cpu", "keys", "make", "x"], "error: usage: ./manage.sh cpu keys create NAME"),
        (["cpu", "keys", "create", "--admin"], "error: keys create needs a NAME"),
        (["cpu", "keys", "revoke"], "error: keys revoke needs one KEY_ID (see: keys list)"),
        (["cpu", "keys", "revoke", "a", "b"], "error: keys revoke needs one KEY_ID"),
    ],
)
def test_keys_bad_usage_is_one_clear_line(stack: Stack, args: list[str], line: str) -> None:
    done = stack.run(*args)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(line), done.stderr
    assert stack.compose_calls() == []
