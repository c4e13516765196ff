"""Fuzz every operation of the API from its own OpenAPI document (schemathesis) against a
real Redis and a real S3 server (SeaweedFS).

Each operation gets schema-valid and schema-invalid requests (query, path, headers, multipart
bodies); every response must be a documented, non-5xx status with the documented content type,
headers and body. So a client's mistake never turns into a 500, and the document says what the
API really accepts and returns.

The app runs under uvicorn in a thread, so requests go through the HTTP parser real clients
meet, with this test's own Redis prefix and bucket. The run is derandomized (the same ~1,500
cases every time, so it cannot flake) and bounded: `EXAMPLES` cases per operation plus
schemathesis's coverage cases (each parameter's edges), about 25 s on two cores. It fails when
either bug it was written against comes back (an unbounded `offset`, a multipart parse error
left unhandled); with 80 cases per operation the second one slipped through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings

from backend.main import create_app
from shared.settings import Settings
from tests.auth import bearer, keyed, make_key
from tests.services import free_port

pytestmark = pytest.mark.service

EXAMPLES = 200

# What a schema cannot say: `POST /analyze` takes any bytes as `file` by its schema, but refuses
# what is not a video container (415) or is empty (422). A job id that fits the pattern (the
# reference of an upload, the inputs of `POST /compare`) may still name no job of the caller (404)
# or one that has not succeeded (409). Those refusals are the API's job.
CONFIG = schemathesis.Config.from_dict(
    {
        "operations": [
            {
                "include-path": "/analyze",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", 404, 409, 413, 415, 422, 429]}},
            },
            {
                "include-path": "/compare",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", 404, 409, 422, 429]}},
            },
        ]
    }
)

# The document does not depend on settings, and parametrize needs it when tests are collected.
# (schemathesis.pytest.from_fixture would load it per test, but it breaks on pytest 9.2.)
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi(), config=CONFIG)


@pytest.fixture
def keyed_settings(service_settings: Settings) -> Settings:
    # With keys required, as the product runs.
    return keyed(service_settings)


@pytest.fixture
def api_url(keyed_settings: Settings) -> Iterator[str]:
    """The app on a real socket (uvicorn in a thread), so requests go through the HTTP parser clients meet."""
    port = free_port()
    config = uvicorn.Config(create_app(keyed_settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the API did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,  # real services: timing is not what this test checks
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)
def test_api_conforms_to_its_schema_and_never_answers_5xx(
    case: schemathesis.Case, api_url: str, keyed_settings: Settings
) -> None:
    headers = dict(case.headers or {})
    # The document declares the bearer scheme: schemathesis sends a made-up key where a case should
    # pass (it becomes a real admin key here: two thirds of the cases), and none where the case
    # checks the 401 of a missing one.
    if any(name.lower() == "authorization" for name in headers):
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        headers.update(bearer(admin_key(keyed_settings)))
    case.call_and_validate(base_url=api_url, headers=headers, timeout=30)


_ADMIN_KEYS: dict[str, str] = {}


def admin_key(settings: Settings) -> str:
    """One admin key per test's Redis prefix (hypothesis calls the test many times per fixture)."""
    if settings.key_prefix not in _ADMIN_KEYS:
        _ADMIN_KEYS[settings.key_prefix] = make_key(settings, "fuzz", admin=True)
    return _ADMIN_KEYS[settings.key_prefix]
