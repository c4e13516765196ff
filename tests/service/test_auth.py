"""Who may see and change a job, against a real API server (uvicorn), real Redis and real S3.

Each rule of issue 11 has a test here: no key → 401; another key's job → 404 on every
route; signed links for results and events; a forged Host never reaches a link; a
cross-site change is refused; per-key caps answer 429 with Retry-After; audit lines
name who did what and carry no secret; /metrics is for the operator.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from backend.auth import LinkSigner
from backend.main import create_app
from shared.apikeys import ApiKeyStore
from shared.jobs import JobStatus, JobStore
from shared.keys import RedisKeys, ResultName, result_key
from shared.logs import redact
from shared.settings import Settings
from shared.storage import Storage
from tests.auth import bearer, keyed, make_key
from tests.processes import env_for, live_api
from tests.synthetic import make_clip

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("auth") / "dance.mp4", seconds=1, fps=10)


@pytest.fixture
def settings(service_settings: Settings) -> Settings:
    # No public S3 endpoint: results are served through the API, so its signed links are used.
    return keyed(service_settings).model_copy(update={"s3_public_endpoint_url": ""})


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    with live_api(settings) as url:
        yield url


def store_for(settings: Settings) -> JobStore:
    return JobStore(redis.Redis.from_url(settings.redis_url), RedisKeys(settings.key_prefix))


def post_video(api: str, clip: Path, key: str | None, **headers: str) -> httpx.Response:
    sent = {**(bearer(key) if key else {}), **headers}
    with clip.open("rb") as handle:
        return httpx.post(
            f"{api}/analyze", files={"file": ("dance.mp4", handle, "video/mp4")}, headers=sent, timeout=30
        )


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


def succeed_with_results(settings: Settings, job_id: str, tmp_path: Path) -> None:
    """What a worker leaves behind: result files in storage and the job succeeded."""
    storage = Storage(settings)
    for name in (ResultName.POSES_JSON, ResultName.METRICS_JSON):
        path = tmp_path / name.value
        path.write_text(json.dumps({"job": job_id, "name": name.value}))
        storage.upload_file(path, result_key(job_id, name), name.content_type)
    store = store_for(settings)
    assert store.start(job_id, "test-worker")
    assert store.succeed(job_id, [ResultName.POSES_JSON.value, ResultName.METRICS_JSON.value], frames_done=10)


# --- keys ---------------------------------------------------------------------------------------


def test_no_key_bad_key_or_revoked_key_get_401_with_the_envelope(api: str, settings: Settings, clip: Path) -> None:
    key = make_key(settings, "dancer")
    for method, path in [("GET", "/jobs"), ("GET", "/me"), ("GET", "/jobs/" + "0" * 32), ("POST", "/analyze")]:
        response = httpx.request(method, api + path, timeout=10)
        assert_error(response, 401, "UNAUTHORIZED")
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert_error(httpx.get(f"{api}/jobs", headers={"Authorization": "Basic abc"}), 401, "UNAUTHORIZED")
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert_error(httpx.get(f"{api}/jobs", headers=bearer(wrong)), 401, "UNAUTHORIZED")
    assert_error(httpx.get(f"{api}/jobs", headers=bearer("dak_nonsense")), 401, "UNAUTHORIZED")
    assert_error(post_video(api, clip, None), 401, "UNAUTHORIZED")
    assert httpx.get(f"{api}/me", headers=bearer(key)).json() == {
        "auth": "keys", "key_id": key.split("_")[1], "name": "dancer", "admin": False,
    }  # fmt: skip

    client = redis.Redis.from_url(settings.redis_url)
    ApiKeyStore(client, RedisKeys(settings.key_prefix)).revoke(key.split("_")[1])
    assert_error(httpx.get(f"{api}/jobs", headers=bearer(key)), 401, "UNAUTHORIZED")
    # The service's front door and health stay open: a load balancer checks them without a key.
    assert httpx.get(f"{api}/health").status_code == 200
    assert httpx.get(f"{api}/").json()["auth"] == "keys"


def test_another_keys_job_does_not_exist_for_it(api: str, settings: Settings, clip: Path, tmp_path: Path) -> None:
    alice, bob = make_key(settings, "alice"), make_key(settings, "bob")
    admin = make_key(settings, "operator", admin=True)
    accepted = post_video(api, clip, alice)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    mine = post_video(api, clip, bob).json()["job_id"]
    succeed_with_results(settings, job_id, tmp_path)

    as_bob = bearer(bob)
    for method, path in [
        ("GET", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/results/poses.json"),
        ("GET", f"/jobs/{job_id}/events"),
        ("POST", f"/jobs/{job_id}/events/token"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("DELETE", f"/jobs/{job_id}"),
    ]:
        response = httpx.request(method, api + path, headers=as_bob, timeout=10)
        body = assert_error(response, 404, "JOB_NOT_FOUND")
        # Word for word what an unknown id gets: nothing tells bob the job exists.
        unknown = httpx.request(method, api + path.replace(job_id, "f" * 32), headers=as_bob, timeout=10).json()
        assert body["error"]["message"].replace(job_id, "f" * 32) == unknown["error"]["message"]

    listed = httpx.get(f"{api}/jobs", headers=as_bob).json()
    assert [job["job_id"] for job in listed["jobs"]] == [mine] and listed["total"] == 1
    assert httpx.get(f"{api}/jobs?status=succeeded", headers=as_bob).json()["total"] == 0
    # Still there, untouched, for its owner and for the admin.
    view = httpx.get(f"{api}/jobs/{job_id}", headers=bearer(alice)).json()
    assert view["status"] == "succeeded"
    assert httpx.get(f"{api}/jobs?status=succeeded", headers=bearer(alice)).json()["total"] == 1
    everyone = httpx.get(f"{api}/jobs", headers=bearer(admin)).json()
    assert {job["job_id"] for job in everyone["jobs"]} == {job_id, mine}
    assert httpx.delete(f"{api}/jobs/{mine}", headers=bearer(admin)).status_code == 204
    assert httpx.get(f"{api}/jobs", headers=as_bob).json()["total"] == 0


def test_result_links_are_signed_per_file_and_die_with_the_key(
    api: str, settings: Settings, clip: Path, tmp_path: Path
) -> None:
    key = make_key(settings, "alice")
    job_id = post_video(api, clip, key).json()["job_id"]
    succeed_with_results(settings, job_id, tmp_path)
    links = httpx.get(f"{api}/jobs/{job_id}", headers=bearer(key)).json()["results"]
    poses = links["poses.json"]
    assert poses.startswith(f"{api}/jobs/{job_id}/results/poses.json?token=")
    # The link works with no header at all (a <video src>, a download), and only for its own file.
    assert httpx.get(poses).json() == {"job": job_id, "name": "poses.json"}
    token = poses.split("token=")[1]
    other = f"{api}/jobs/{job_id}/results/metrics.json?token={token}"
    assert_error(httpx.get(other), 401, "UNAUTHORIZED")
    assert_error(httpx.get(poses[:-3] + ("abc" if not poses.endswith("abc") else "xyz")), 401, "UNAUTHORIZED")
    assert_error(httpx.get(f"{api}/jobs/{job_id}/results/poses.json"), 401, "UNAUTHORIZED")
    # Ranges still work through a signed link (video players seek).
    part = httpx.get(poses, headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == b'{"jo'
    # An expired link, signed with the API's own secret, is refused.
    expired, _ = LinkSigner(settings.secret_key).sign(job_id, "result:poses.json", key.split("_")[1], -120)
    assert_error(httpx.get(f"{api}/jobs/{job_id}/results/poses.json?token={expired}"), 401, "UNAUTHORIZED")
    # Revoking the key ends its links at once.
    ApiKeyStore(redis.Redis.from_url(settings.redis_url), RedisKeys(settings.key_prefix)).revoke(key.split("_")[1])
    assert_error(httpx.get(poses), 401, "UNAUTHORIZED")


def test_event_stream_through_a_short_lived_token(api: str, settings: Settings, clip: Path, tmp_path: Path) -> None:
    key = make_key(settings, "alice")
    job_id = post_video(api, clip, key).json()["job_id"]
    assert_error(httpx.get(f"{api}/jobs/{job_id}/events", timeout=10), 401, "UNAUTHORIZED")
    link = httpx.post(f"{api}/jobs/{job_id}/events/token", headers=bearer(key)).json()
    assert link["events_url"] == f"{api}/jobs/{job_id}/events?token={link['token']}"
    assert 0 < link["expires_at"] - time.time() <= 660
    succeed_with_results(settings, job_id, tmp_path)
    # As EventSource would: no header, the token in the URL; the stream ends after the final status.
    with httpx.stream("GET", link["events_url"], timeout=20) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1]["status"] == "succeeded" and events[-1]["job_id"] == job_id
    # The token is for this job's events only.
    other = post_video(api, clip, key).json()["job_id"]
    assert_error(httpx.get(f"{api}/jobs/{other}/events?token={link['token']}"), 401, "UNAUTHORIZED")
    # A key in the header works too (fetch-based clients).
    with httpx.stream("GET", f"{api}/jobs/{job_id}/events", headers=bearer(key), timeout=20) as response:
        assert response.status_code == 200


# --- hosts and origins --------------------------------------------------------------------------


def test_a_forged_host_never_appears_in_a_link(api: str, settings: Settings, clip: Path) -> None:
    key = make_key(settings, "alice")
    rebound = post_video(api, clip, key, Host="evil.example")
    body = assert_error(rebound, 400, "HOST_NOT_ALLOWED")
    assert "evil.example" not in rebound.headers.get("location", "")
    assert body["error"]["details"]["host"] == "evil.example"
    for forged in ("evil.example:8000", "localhost@evil.example", "localhost:80:80", "[::1", ""):
        assert_error(httpx.get(f"{api}/jobs", headers={**bearer(key), "Host": forged}), 400, "HOST_NOT_ALLOWED")
    assert httpx.get(f"{api}/jobs", headers={**bearer(key), "Host": "LOCALHOST.:8000"}).status_code == 200
    # An allowed name works and its links use it.
    accepted = post_video(api, clip, key, Host="localhost")
    assert accepted.status_code == 202
    assert accepted.headers["location"].startswith("http://localhost/jobs/")


def test_public_base_url_is_the_only_source_of_links(settings: Settings, clip: Path) -> None:
    public = settings.model_copy(update={"public_base_url": "https://dance.example.org", "allowed_hosts": "*"})
    key = make_key(public, "alice")
    with live_api(public) as api:
        accepted = post_video(api, clip, key, Host="evil.example")
        assert accepted.status_code == 202
        assert accepted.json()["status_url"].startswith("https://dance.example.org/jobs/")
        assert "evil.example" not in json.dumps(httpx.get(f"{api}/jobs", headers=bearer(key)).json())


def test_open_api_refuses_changes_sent_from_another_site(service_settings: Settings, clip: Path) -> None:
    with live_api(service_settings) as api:  # API_AUTH=open, as `manage.sh local` may run it
        accepted = post_video(api, clip, None)
        assert accepted.status_code == 202
        job_id = accepted.json()["job_id"]
        cross = httpx.post(f"{api}/jobs/{job_id}/cancel", headers={"Origin": "http://evil.example"})
        assert_error(cross, 403, "CROSS_SITE_REQUEST")
        assert_error(post_video(api, clip, None, Origin="http://evil.example"), 403, "CROSS_SITE_REQUEST")
        assert_error(httpx.delete(f"{api}/jobs/{job_id}", headers={"Origin": "null"}), 403, "CROSS_SITE_REQUEST")
        assert httpx.get(f"{api}/jobs/{job_id}").json()["status"] == "queued"
        # The web page's own requests (same origin) and clients without Origin pass.
        own = httpx.post(f"{api}/jobs/{job_id}/cancel", headers={"Origin": api})
        assert own.status_code == 200 and own.json()["status"] == "canceled"


# --- caps ---------------------------------------------------------------------------------------


def test_queued_jobs_per_key_are_capped_with_429(settings: Settings, clip: Path) -> None:
    capped = settings.model_copy(update={"max_queued_jobs_per_key": 2})
    alice, bob = make_key(capped, "alice"), make_key(capped, "bob")
    with live_api(capped) as api:
        first = [post_video(api, clip, alice).status_code for _ in range(2)]
        assert first == [202, 202]
        refused = post_video(api, clip, alice)
        body = assert_error(refused, 429, "RATE_LIMITED")
        assert int(refused.headers["retry-after"]) > 0
        assert body["error"]["details"] == {"limit": "queued_jobs", "max": 2, "retry_after_seconds": 60}
        assert post_video(api, clip, bob).status_code == 202  # other keys are not held back
        # Nothing of the refused upload stayed behind, and a finished job frees a place.
        assert httpx.get(f"{api}/jobs", headers=bearer(alice)).json()["total"] == 2
        job_id = httpx.get(f"{api}/jobs", headers=bearer(alice)).json()["jobs"][0]["job_id"]
        assert httpx.post(f"{api}/jobs/{job_id}/cancel", headers=bearer(alice)).status_code == 200
        assert post_video(api, clip, alice).status_code == 202
    assert sorted(Storage(capped).list_keys("uploads/")) and len(Storage(capped).list_keys("uploads/")) == 4


def test_uploads_in_flight_per_key_are_capped_and_a_slot_frees_when_the_upload_ends(
    settings: Settings, clip: Path
) -> None:
    capped = settings.model_copy(update={"max_uploads_in_flight_per_key": 1})
    key = make_key(capped, "alice")
    with live_api(capped) as api:
        port = int(api.rsplit(":", 1)[1])
        boundary = "slow"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        data = clip.read_bytes()
        tail = f"\r\n--{boundary}--\r\n".encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            # An upload that has started and is still arriving holds the key's only slot.
            sock.sendall(
                f"POST /analyze HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(head) + len(data) + len(tail)}\r\n\r\n".encode()
                + head
                + data[:100]
            )
            claims = RedisKeys(capped.key_prefix).owner_uploads(key.split("_")[1])
            client = redis.Redis.from_url(capped.redis_url)
            deadline = time.monotonic() + 10
            while not client.zcard(claims) and time.monotonic() < deadline:
                time.sleep(0.05)
            refused = post_video(api, clip, key)
            assert_error(refused, 429, "RATE_LIMITED")
            assert refused.json()["error"]["details"]["limit"] == "uploads_in_flight"
            assert refused.headers["retry-after"] == "30"
            sock.sendall(data[100:] + tail)
            answer = sock.recv(65536).decode()
            assert answer.startswith("HTTP/1.1 202"), answer[:300]
        assert client.zcard(claims) == 0
        assert post_video(api, clip, key).status_code == 202


# --- audit and logs -----------------------------------------------------------------------------


def test_every_change_of_state_leaves_one_audit_line_without_secrets(
    api: str, settings: Settings, clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = make_key(settings, "alice")
    key_id = key.split("_")[1]
    with caplog.at_level(logging.INFO, logger="audit"):
        job_id = post_video(api, clip, key).json()["job_id"]
        httpx.post(f"{api}/jobs/{job_id}/cancel", headers=bearer(key))
        httpx.delete(f"{api}/jobs/{job_id}", headers=bearer(key))
        httpx.post(f"{api}/jobs/{job_id}/cancel", headers=bearer(key))  # 404: no change, no line
    events = [r.audit for r in caplog.records if r.name == "audit"]  # type: ignore[attr-defined]
    assert [e["action"] for e in events if e.get("job_id") == job_id] == ["job.created", "job.canceled", "job.deleted"]
    assert all(e["actor"] == f"key:{key_id} (alice)" for e in events)
    assert events[0]["owner"] == key_id and events[0]["size_bytes"] == clip.stat().st_size
    assert key not in caplog.text and key.split("_", 2)[2] not in caplog.text


def test_logs_never_carry_tokens_keys_or_presigned_signatures() -> None:
    line = (
        "GET /jobs/abc/events?token=1700000000.3f2a.SIGNATURE HTTP/1.1 Authorization: Bearer dak_0123456789ab_"
        + "A" * 43
        + " https://s3/x?X-Amz-Credential=AKIA%2F&X-Amz-Signature=deadbeef&a=1"
    )
    cleaned = redact(line)
    for secret in ("SIGNATURE", "A" * 43, "deadbeef", "AKIA"):
        assert secret not in cleaned
    assert "token=REDACTED" in cleaned and "&a=1" in cleaned


# --- the operator's side ------------------------------------------------------------------------


def test_metrics_are_for_an_admin_key_or_the_metrics_token(settings: Settings) -> None:
    with_token = settings.model_copy(update={"metrics_token": "scrape-" + "y" * 30})
    user, admin = make_key(with_token, "alice"), make_key(with_token, "operator", admin=True)
    with live_api(with_token) as api:
        assert_error(httpx.get(f"{api}/metrics"), 401, "UNAUTHORIZED")
        assert_error(httpx.get(f"{api}/metrics", headers=bearer(user)), 403, "FORBIDDEN")
        assert httpx.get(f"{api}/metrics", headers=bearer(admin)).status_code == 200
        scraped = httpx.get(f"{api}/metrics", headers=bearer(with_token.metrics_token))
        assert scraped.status_code == 200 and "dance_" in scraped.text


def test_keys_command_line_creates_lists_and_revokes(settings: Settings) -> None:
    env = {**os.environ, **env_for(settings)}

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shared.apikeys", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = json.loads(keys("create", "studio app", "--json").stdout)
    assert made["name"] == "studio app" and made["admin"] is False and made["key"].startswith("dak_")
    listed = keys("list", "--json")
    assert made["key"] not in listed.stdout and "digest" not in listed.stdout
    assert [k["key_id"] for k in json.loads(listed.stdout)] == [made["key_id"]]
    # Stored hashed: Redis holds no trace of the key itself.
    stored = redis.Redis.from_url(settings.redis_url).hgetall(RedisKeys(settings.key_prefix).api_keys())
    assert made["key"].split("_", 2)[2].encode() not in b"".join(stored.values())
    assert keys("revoke", made["key_id"]).returncode == 0
    assert json.loads(keys("list", "--json").stdout)[0]["revoked_at"] is not None
    missing = keys("revoke", "000000000000")
    assert missing.returncode == 1 and "no key" in missing.stderr
    assert keys("create", "").returncode == 2


def test_job_records_remember_their_owner_through_every_transition(settings: Settings) -> None:
    store = store_for(settings)
    from shared.jobs import JobRecord

    store.create(JobRecord(job_id="a" * 32, owner="k1"))
    assert store.ids(owner="k1") == ["a" * 32] and store.ids(JobStatus.QUEUED, owner="k1") == ["a" * 32]
    store.start("a" * 32, "w")
    assert store.ids(JobStatus.QUEUED, owner="k1") == [] and store.ids(JobStatus.RUNNING, owner="k1") == ["a" * 32]
    store.retry("a" * 32, "lost")
    assert store.ids(JobStatus.QUEUED, owner="k1") == ["a" * 32]
    store.delete("a" * 32)
    assert store.ids(owner="k1") == [] and store.count(JobStatus.QUEUED, owner="k1") == 0


def test_the_app_builds_with_keys_required_by_default() -> None:
    assert create_app(Settings()).state.settings.api_auth == "keys"


def test_a_separate_frontend_can_use_keys_and_read_the_wait_of_a_429(settings: Settings, clip: Path) -> None:
    frontend = "http://studio.example:5173"
    crossed = settings.model_copy(update={"cors_origins": frontend, "max_queued_jobs_per_key": 1})
    key = make_key(crossed, "studio")
    with live_api(crossed) as api:
        preflight = httpx.options(
            f"{api}/analyze",
            headers={"Origin": frontend, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization"},
        )  # fmt: skip
        assert preflight.status_code == 200 and "authorization" in preflight.headers["access-control-allow-headers"]
        assert post_video(api, clip, key, Origin=frontend).status_code == 202
        refused = post_video(api, clip, key, Origin=frontend)
        assert_error(refused, 429, "RATE_LIMITED")
        # A page on the frontend's origin may read how long to wait, and why a call was refused.
        exposed = {h.strip().lower() for h in refused.headers["access-control-expose-headers"].split(",")}
        assert {"retry-after", "www-authenticate"} <= exposed
