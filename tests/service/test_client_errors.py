"""A client's mistake gets a 4xx in the error envelope, never a 5xx, and leaves nothing behind.

Against a real Redis and a real S3 server (SeaweedFS), because most of these came from a real
server's answer: Redis refusing a 64-bit offset (500), S3 refusing a range (503), S3 keeping
the parts of a multipart upload nobody finished. The others were python-multipart's parse
errors (500), a 5000-character file name among them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.main import create_app
from backend.routes.jobs import MAX_OFFSET
from backend.upload import clean_filename
from shared.jobs import JobRecord, JobStage, JobStatus, JobStore
from shared.keys import RedisKeys, result_key
from shared.settings import Settings
from shared.storage import Storage

pytestmark = pytest.mark.service

BOUNDARY = "fuzzboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
# The first bytes of an MP4: enough for the upload to be taken as a video.
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2mp41"


@pytest.fixture
def client(service_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(service_settings)) as test_client:
        yield test_client


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return dict(body["error"])


def pending_uploads(settings: Settings) -> list[str]:
    storage = Storage(settings)
    return [item["Key"] for item in storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])]


def assert_nothing_left(settings: Settings, client: TestClient) -> None:
    assert Storage(settings).list_keys("") == []
    assert pending_uploads(settings) == []
    assert client.get("/jobs").json()["total"] == 0


def part(name: str, data: bytes, filename: str | None = None, *, last: bool = False) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
    return head + data + b"\r\n" + (f"--{BOUNDARY}--\r\n".encode() if last else b"")


def post(client: TestClient, body: bytes, content_type: str = MULTIPART) -> httpx.Response:
    return client.post("/analyze", content=body, headers={"content-type": content_type})


# --- 1. GET /jobs?offset= past Redis's 64-bit range ------------------------------------------


def test_an_offset_past_any_job_is_a_422_and_the_document_says_so(client: TestClient) -> None:
    # Redis answered "value is not an integer or out of range": a 500.
    assert_error(client.get("/jobs", params={"offset": 9223372036854775804}), 422, "VALIDATION_ERROR")
    assert_error(client.get("/jobs", params={"offset": MAX_OFFSET + 1}), 422, "VALIDATION_ERROR")
    page = client.get("/jobs", params={"offset": MAX_OFFSET, "limit": 100})
    assert page.status_code == 200 and page.json()["jobs"] == []

    operation = client.get("/openapi.json").json()["paths"]["/jobs"]["get"]
    offset = next(p for p in operation["parameters"] if p["name"] == "offset")
    assert offset["schema"]["maximum"] == MAX_OFFSET
    # The 422 is documented as the envelope it is, not as FastAPI's {"detail": [...]}.
    schema = operation["responses"]["422"]["content"]["application/json"]["schema"]
    assert schema["properties"]["error"]["required"] == ["code", "message", "details"]


def test_a_405_names_every_method_served_at_the_path(client: TestClient) -> None:
    # GET and DELETE /jobs/{job_id} are two routes; FastAPI's 405 named only the first one's.
    response = client.request("PATCH", "/jobs/0123456789abcdef0123456789abcdef")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "DELETE, GET"


# --- 2. malformed and unfinished multipart bodies -------------------------------------------------

MALFORMED = {
    "no leading boundary": b"garbage--" + BOUNDARY.encode() + b"\r\n",
    "part without headers": f"--{BOUNDARY}\r\n--{BOUNDARY}--\r\n".encode(),
    "space in a header name": f"--{BOUNDARY}\r\nBad Header: 1\r\n\r\nabc\r\n--{BOUNDARY}--\r\n".encode(),
    "control character in a header name": (
        f'--{BOUNDARY}\r\nContent-Disposition\x0b: form-data; name="file"\r\n\r\nabc\r\n--{BOUNDARY}--\r\n'.encode()
    ),
    "header line without LF": f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"\rX\r\n\r\n'.encode(),
    "nine headers in a part": (
        f"--{BOUNDARY}\r\n".encode() + b"".join(b"H%d: v\r\n" % i for i in range(9)) + b"\r\nabc\r\n"
    ),
    "a boolean where the form should be": f"--{BOUNDARY}\r\nTrue--{BOUNDARY}--\r\n".encode(),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_multipart_body_is_a_422(client: TestClient, service_settings: Settings, body: bytes) -> None:
    # python-multipart's parse error went unhandled: a 500.
    error = assert_error(post(client, body), 422, "VALIDATION_ERROR")
    assert "malformed" in error["message"]
    assert_nothing_left(service_settings, client)


def test_a_boundary_over_256_bytes_is_a_422(client: TestClient, service_settings: Settings) -> None:
    boundary = "b" * 300
    body = f"--{boundary}\r\n".encode() + part("file", MP4_HEAD)[len(BOUNDARY) + 4 :]
    assert_error(post(client, body, f"multipart/form-data; boundary={boundary}"), 422, "VALIDATION_ERROR")
    assert_nothing_left(service_settings, client)


def test_the_check_below_sees_unfinished_uploads(service_settings: Settings) -> None:
    """SeaweedFS lists unfinished multipart uploads, so `pending_uploads() == []` proves something."""
    writer = Storage(service_settings).multipart_writer("uploads/probe/source.mp4", "video/mp4")
    writer.send_part(b"x" * (5 * 1024 * 1024))
    try:
        assert pending_uploads(service_settings) == ["uploads/probe/source.mp4"]
    finally:
        writer.abort()
    assert pending_uploads(service_settings) == []


def test_a_body_cut_inside_the_file_aborts_the_stored_parts(client: TestClient, service_settings: Settings) -> None:
    # Two 5 MB parts reach storage, then the body ends without its closing boundary: the file part
    # never ended, so it was neither completed nor aborted, and the answer was MISSING_FILE.
    head = part("file", b"", "cut.mp4")[: -len(b"\r\n")]
    body = head + MP4_HEAD + b"\0" * (12 * 1024 * 1024)
    error = assert_error(post(client, body), 422, "VALIDATION_ERROR")
    assert "closing boundary" in error["message"]
    assert_nothing_left(service_settings, client)


def test_a_body_cut_after_the_file_removes_the_stored_file(client: TestClient, service_settings: Settings) -> None:
    # The file is complete in storage; the profile field after it never ends.
    body = part("file", MP4_HEAD + b"\0" * 1000, "dance.mp4") + f"--{BOUNDARY}\r\n".encode()
    body += b'Content-Disposition: form-data; name="profile"\r\n\r\nfa'
    assert_error(post(client, body), 422, "VALIDATION_ERROR")
    assert_nothing_left(service_settings, client)


def test_a_malformed_part_after_a_large_file_removes_the_stored_file(
    client: TestClient, service_settings: Settings
) -> None:
    body = (
        part("file", MP4_HEAD + b"\0" * (6 * 1024 * 1024), "dance.mp4") + f"--{BOUNDARY}\r\nBad Header: 1\r\n".encode()
    )
    assert_error(post(client, body), 422, "VALIDATION_ERROR")
    assert_nothing_left(service_settings, client)


def test_a_second_file_is_refused_and_the_first_removed(client: TestClient, service_settings: Settings) -> None:
    body = part("file", MP4_HEAD, "one.mp4") + part("file", b"", "two.mp4", last=True)
    error = assert_error(post(client, body), 422, "VALIDATION_ERROR")
    assert "one file" in error["message"]
    assert_nothing_left(service_settings, client)


def test_a_complete_body_still_gets_through(client: TestClient) -> None:
    body = part("file", MP4_HEAD, "dance.mp4") + part("profile", b"accurate", last=True)
    response = post(client, body)
    assert response.status_code == 202, response.text


# --- 3. a 5000-character file name -------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["a" * 5000, "é" * 5000], ids=["ascii", "two-byte-utf8"])
def test_a_very_long_filename_is_accepted_and_shortened(client: TestClient, stem: str) -> None:
    # Its Content-Disposition line passed python-multipart's 4 KiB header limit: a parse error, a 500.
    response = post(client, part("file", MP4_HEAD, f"{stem}.mp4", last=True))
    assert response.status_code == 202, response.text
    job = client.get(f"/jobs/{response.json()['job_id']}").json()
    assert job["filename"] == stem[:251] + ".mp4"


def test_a_header_beyond_the_limit_is_a_422(client: TestClient, service_settings: Settings) -> None:
    response = post(client, part("file", MP4_HEAD, "a" * 40_000 + ".mp4", last=True))
    assert_error(response, 422, "VALIDATION_ERROR")
    assert_nothing_left(service_settings, client)


def test_an_unsupported_upload_does_not_echo_a_long_filename(client: TestClient) -> None:
    error = assert_error(
        post(client, part("file", b"plain text", "n" * 5000 + ".txt", last=True)), 415, "UNSUPPORTED_MEDIA"
    )
    assert len(error["details"]["filename"]) == 255


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("dance.mp4", "dance.mp4"),
        ("../../etc/passwd", "passwd"),
        ("C:/Users/me/dance.mov", "dance.mov"),
        (None, "video"),
        ("", "video"),
        ("x" * 300, "x" * 255),
        ("x" * 300 + ".webm", "x" * 250 + ".webm"),
        ("x" * 300 + "." + "y" * 40, ("x" * 300 + "." + "y" * 40)[:255]),  # not an extension worth keeping
    ],
)
def test_clean_filename(given: str | None, kept: str) -> None:
    assert clean_filename(given) == kept


# --- 4. Range headers on results ----------------------------------------------------------------------

DATA = bytes(i % 251 for i in range(1000))  # no two neighbouring bytes alike, so a wrong slice shows


@pytest.fixture
def result_url(service_settings: Settings) -> str:
    """A succeeded job whose poses.csv holds DATA and whose metrics.json is empty."""
    job_id = uuid.uuid4().hex
    storage = Storage(service_settings)
    storage.client.put_object(Bucket=storage.bucket, Key=result_key(job_id, "poses.csv"), Body=DATA)
    storage.client.put_object(Bucket=storage.bucket, Key=result_key(job_id, "metrics.json"), Body=b"")
    connection = redis.Redis.from_url(service_settings.redis_url)
    store = JobStore(connection, RedisKeys(service_settings.key_prefix))
    store.create(
        JobRecord(
            job_id=job_id,
            status=JobStatus.SUCCEEDED,
            stage=JobStage.DONE,
            progress=1.0,
            results=["poses.csv", "metrics.json"],
            started_at=1.0,
            finished_at=2.0,
        )
    )
    connection.close()
    return f"/jobs/{job_id}/results/poses.csv"


def get_range(client: TestClient, url: str, header: str) -> httpx.Response:
    return client.get(url, headers={"Range": header})


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=990-", 990, 999),
        ("bytes=-10", 990, 999),
        ("bytes=-5000", 0, 999),
        ("bytes=500-99999999999999999999", 500, 999),
        ("bytes=-99999999999999999999", 0, 999),
        ("Bytes = 0-9", 0, 9),
    ],
)
def test_a_satisfiable_range_is_a_206(client: TestClient, result_url: str, header: str, first: int, last: int) -> None:
    response = get_range(client, result_url, header)
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {first}-{last}/1000"
    assert response.content == DATA[first : last + 1]


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=1000-", "bytes=-0", "bytes=" + "9" * 5000 + "-"])
def test_an_unsatisfiable_range_is_a_416_with_the_size(client: TestClient, result_url: str, header: str) -> None:
    # S3's InvalidRange was taken for storage being down: a 503.
    response = get_range(client, result_url, header)
    error = assert_error(response, 416, "RANGE_NOT_SATISFIABLE")
    assert response.headers["content-range"] == "bytes */1000"
    assert error["details"]["size"] == 1000
    assert len(response.content) < 1000  # not kilobytes of echoed digits


def test_any_range_on_an_empty_file_is_a_416(client: TestClient, result_url: str) -> None:
    response = get_range(client, result_url.replace("poses.csv", "metrics.json"), "bytes=0-")
    assert_error(response, 416, "RANGE_NOT_SATISFIABLE")
    assert response.headers["content-range"] == "bytes */0"


@pytest.mark.parametrize(
    "header", ["bytes=abc", "items=0-1", "bytes=5-2", "bytes=0-1,5-6", "bytes=", "bytes=-", "", "0-9", "bytes 0-9"]
)
def test_a_range_we_do_not_serve_is_ignored(client: TestClient, result_url: str, header: str) -> None:
    # RFC 9110 lets a server ignore Range; the whole file is a valid answer to all of these.
    response = get_range(client, result_url, header)
    assert response.status_code == 200
    assert "content-range" not in response.headers
    assert response.content == DATA


def test_the_document_declares_206_and_416(client: TestClient) -> None:
    responses = client.get("/openapi.json").json()["paths"]["/jobs/{job_id}/results/{name}"]["get"]["responses"]
    assert {"200", "206", "404", "409", "416", "503"} <= set(responses)
    assert "Content-Range" in responses["416"]["headers"]


_RANGE_TEXT = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    st.builds(
        lambda unit, first, last, extra: f"{unit}={first}-{last}{extra}",
        st.sampled_from(["bytes", "BYTES", "bytes ", "items"]),
        st.one_of(st.just(""), st.integers(0, 1200).map(str), st.integers(0, 10**30).map(str)),
        st.one_of(st.just(""), st.integers(0, 1200).map(str), st.integers(0, 10**30).map(str)),
        st.sampled_from(["", ",0-1", " ", "x"]),
    ),
)


@settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=_RANGE_TEXT)
def test_any_range_header_gets_a_whole_file_a_correct_slice_or_a_416(
    client: TestClient, result_url: str, header: str
) -> None:
    response = get_range(client, result_url, header)
    status = response.status_code
    if status == 200:
        assert response.content == DATA
    elif status == 206:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/1000", response.headers["content-range"])
        assert match, response.headers
        first, last = int(match[1]), int(match[2])
        assert 0 <= first <= last <= 999
        assert response.content == DATA[first : last + 1]
    else:
        assert_error(response, 416, "RANGE_NOT_SATISFIABLE")
        assert response.headers["content-range"] == "bytes */1000"
