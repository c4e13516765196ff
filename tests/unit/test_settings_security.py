"""Production refuses placeholder secrets and an open API; hosts come from ALLOWED_HOSTS and PUBLIC_BASE_URL."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings, host_name, is_placeholder_secret

GOOD = {"environment": "production", "s3_secret_key": "s3-" + "x" * 30, "secret_key": "k" * 40}


def test_production_starts_with_chosen_secrets() -> None:
    assert Settings(**GOOD).environment == "production"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"s3_secret_key": "CHANGE-ME-at-least-8-chars"}, "S3_SECRET_KEY"),
        ({"s3_secret_key": "minioadmin"}, "S3_SECRET_KEY"),
        ({"secret_key": ""}, "SECRET_KEY"),
        ({"secret_key": "change-me"}, "SECRET_KEY"),
        ({"secret_key": "short"}, "SECRET_KEY must be at least 32"),
        ({"api_auth": "open"}, "API_AUTH"),
        ({"rq_dashboard_password": "CHANGE-ME"}, "RQ_DASHBOARD_PASSWORD"),
        ({"metrics_token": "changethis"}, "METRICS_TOKEN"),
    ],
)
def test_production_refuses(override: dict[str, str], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**{**GOOD, **override})


def test_local_runs_with_defaults_and_may_be_open() -> None:
    assert Settings(api_auth="open", s3_secret_key="minioadmin").api_auth == "open"


def test_placeholders() -> None:
    assert is_placeholder_secret("  ") and is_placeholder_secret("my-CHANGE-ME-pass") and is_placeholder_secret("Admin")
    assert not is_placeholder_secret("b1f0e2c3d4")


def test_allowed_hosts_add_the_public_host() -> None:
    settings = Settings(allowed_hosts="api.internal, LOCALHOST", public_base_url="https://Dance.Example.org:8443/")
    assert settings.allowed_host_list == ["api.internal", "dance.example.org", "localhost"]
    assert Settings(allowed_hosts="*,x").allowed_host_list == ["*"]


@pytest.mark.parametrize(
    ("header", "name"),
    [("LocalHost:8000", "localhost"), ("[::1]:8000", "::1"), ("[::1]", "::1"), ("example.org.", "example.org"),
     ("a@b", ""), ("x:80:80", ""), ("[::1", ""), ("", ""), ("ex ample", "")],
)  # fmt: skip
def test_host_name_reads_a_host_header_strictly(header: str, name: str) -> None:
    assert host_name(header) == name
    assert "::1" in Settings().allowed_host_list  # the default's "[::1]" matches an IPv6 loopback Host
