"""docker/healthcheck.py, the health checks the images run."""

from __future__ import annotations

import base64
import importlib.util
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import fakeredis
import pytest
from rq import Queue, Worker

from tests.docker.conftest import REPO

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", REPO / "docker" / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(b"admin:s3cret").decode()
        if self.path == "/private" and self.headers.get("Authorization") != expected:
            self.send_response(401)
        elif self.path in ("/health", "/private"):
            self.send_response(200)
        else:
            self.send_response(503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http(healthcheck: ModuleType, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert healthcheck.main(["http", f"{server}/health"]) == 0
    assert healthcheck.main(["http", f"{server}/down"]) == 1
    assert healthcheck.main(["http", f"{server}/private"]) == 1
    monkeypatch.setenv("U", "admin")
    monkeypatch.setenv("P", "s3cret")
    assert healthcheck.main(["http", f"{server}/private", "--auth-env", "U:P"]) == 0
    monkeypatch.setenv("P", "wrong")
    assert healthcheck.main(["http", f"{server}/private", "--auth-env", "U:P"]) == 1


def test_http_unreachable(healthcheck: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert healthcheck.main(["--timeout", "1", "http", "http://127.0.0.1:9/health"]) == 1
    assert "unreachable" in capsys.readouterr().err


def test_worker(healthcheck: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    fake = fakeredis.FakeRedis()
    monkeypatch.setattr(redis.Redis, "from_url", classmethod(lambda cls, *a, **k: fake))
    assert healthcheck.main(["worker"]) == 1  # nobody registered yet
    worker = Worker([Queue("analysis", connection=fake)], connection=fake)
    worker.register_birth()
    assert healthcheck.main(["worker"]) == 0
    worker.register_death()
    assert healthcheck.main(["worker"]) == 1
