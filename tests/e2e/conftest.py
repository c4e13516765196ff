"""The whole local stack, started once per session through `./manage.sh local start`.

It runs in a temp LOCAL_DIR on free ports, with USE_MOCK_ANALYSIS=true, next to
any stack a developer already has running. At the end `./manage.sh local stop`
must leave none of its processes behind.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.services import free_ports

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "manage.sh"
START_TIMEOUT = 600  # a first run may install packages


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def process_alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@dataclass
class LocalStack:
    base_url: str
    local_dir: Path
    env: dict[str, str]
    ports: dict[str, int]
    urls: dict[str, str] = field(default_factory=dict)

    def manage(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `./manage.sh ARGS` against this stack; output captured as text."""
        done = subprocess.run(
            [str(MANAGE), *args],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"./manage.sh {' '.join(args)} exited {done.returncode}\n"
                f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n{self.log_tails()}"
            )
        return done

    @property
    def headers(self) -> dict[str, str]:
        """The stack's own admin key, which `start` made and keeps in LOCAL_DIR/api-key."""
        return {"Authorization": f"Bearer {(self.local_dir / 'api-key').read_text().strip()}"}

    def pids(self) -> dict[str, int]:
        """Service name -> pid, from the pid files `start` wrote."""
        return {path.stem: int(path.read_text().split()[0]) for path in sorted((self.local_dir / "run").glob("*.pid"))}

    def log_tails(self, lines: int = 20) -> str:
        out = []
        for log in sorted((self.local_dir / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log}\n" + "\n".join(tail))
        return "\n".join(out)

    def start(self) -> None:
        self.manage("local", "start", timeout=START_TIMEOUT)

    def stop(self) -> None:
        """Stop the stack and check that every process it had is gone."""
        pids = self.pids()
        self.manage("local", "stop", timeout=120)
        alive = {name: pid for name, pid in pids.items() if process_alive(pid)}
        assert not alive, f"still running after stop: {alive}"
        assert not list((self.local_dir / "run").glob("*.pid")), "pid files left after stop"


def stack_env(local_dir: Path) -> tuple[dict[str, str], dict[str, int]]:
    plain = dict(zip(("API_PORT", "REDIS_PORT", "DASHBOARD_PORT"), free_ports(3), strict=True))
    weed_names = ("S3_PORT", "WEED_MASTER_PORT", "WEED_VOLUME_PORT", "WEED_FILER_PORT", "WEED_ADMIN_PORT")
    weed = dict(zip(weed_names, free_ports(5, with_grpc=True, taken=set(plain.values())), strict=True))
    ports = {**plain, **weed}
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "LOCAL_DIR": str(local_dir),
        "USE_MOCK_ANALYSIS": "true",
        "MAX_UPLOAD_MB": "16",  # small, so the oversized-upload test sends little
        "STOP_TIMEOUT": "30",
    }
    # The stack's own values, not whatever the shell running pytest points at.
    for name in ("REDIS_URL", "S3_ENDPOINT_URL", "S3_PUBLIC_ENDPOINT_URL", "PUBLIC_BASE_URL", "WORK_DIR"):
        env.pop(name, None)
    return env, ports


@pytest.fixture(scope="session")
def local_stack_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The running stack: base URL, LOCAL_DIR, env, ports and a `manage()` helper."""
    local_dir = tmp_path_factory.mktemp("local-stack")
    env, ports = stack_env(local_dir)
    stack = LocalStack(f"http://127.0.0.1:{ports['API_PORT']}", local_dir, env, ports)
    stack.urls = {
        "api": stack.base_url,
        "web": f"{stack.base_url}/app/",
        "docs": f"{stack.base_url}/docs",
        "dashboard": f"http://127.0.0.1:{ports['DASHBOARD_PORT']}",
        "s3": f"http://127.0.0.1:{ports['S3_PORT']}",
        "redis": f"redis://127.0.0.1:{ports['REDIS_PORT']}/0",
    }
    started = time.monotonic()
    try:
        stack.start()
    except BaseException:
        stack.manage("local", "stop", check=False)
        raise
    print(f"local stack up in {time.monotonic() - started:.1f}s at {stack.base_url} ({local_dir})")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def local_stack(local_stack_info: LocalStack) -> str:
    """The API base URL of the running local stack (mock analysis), e.g. http://127.0.0.1:PORT."""
    return local_stack_info.base_url
