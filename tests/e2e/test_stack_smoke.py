"""The local stack as `./manage.sh local` runs it: up, healthy, reported, and stopped cleanly."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import LocalStack, process_alive

pytestmark = pytest.mark.e2e


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_health_is_ok(local_stack: str) -> None:
    status, body = get(f"{local_stack}/health")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_status_reports_every_service_running_and_every_url(local_stack_info: LocalStack) -> None:
    out = local_stack_info.manage("local", "status").stdout
    for service in ("redis", "s3", "api", "worker", "dashboard"):
        assert any(line.split()[:2] == [service, "running"] for line in out.splitlines()), out
    for url in local_stack_info.urls.values():
        assert url in out, f"{url} missing from:\n{out}"


def test_docs_and_dashboard_answer(local_stack_info: LocalStack) -> None:
    assert get(local_stack_info.urls["docs"])[0] == 200
    url = f"{local_stack_info.urls['dashboard']}/0/data/queues.json"
    # The dashboard needs its login, which the stack made and `status` prints.
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(url)
    assert refused.value.code == 401
    out = local_stack_info.manage("local", "status").stdout
    found = re.search(r"RQ dashboard .*\(user (\S+), password (\S+)\)", out)
    assert found, out
    login = base64.b64encode(f"{found[1]}:{found[2]}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {login}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        # It reads the JSON-serialized queue.
        assert response.status == 200 and "queues" in json.loads(response.read())


def test_start_again_is_a_no_op(local_stack_info: LocalStack) -> None:
    before = local_stack_info.pids()
    done = local_stack_info.manage("local", "start")
    assert "already running" in done.stderr
    assert local_stack_info.pids() == before


def test_stop_leaves_no_process_and_start_brings_it_back(local_stack_info: LocalStack) -> None:
    # Runs last in this module; the stack is up again afterwards for any later test.
    pids = local_stack_info.pids()
    assert set(pids) == {"redis", "s3", "api", "worker", "dashboard"}
    local_stack_info.stop()
    assert not any(process_alive(pid) for pid in pids.values())
    status = local_stack_info.manage("local", "status", check=False)
    assert status.returncode == 3 and "running" not in status.stdout
    local_stack_info.start()
    assert get(f"{local_stack_info.base_url}/health")[0] == 200


def test_storage_serves_data_through_s3_with_its_keys_only(local_stack_info: LocalStack) -> None:
    """SeaweedFS's filer, master and volume ports refuse anonymous reads and writes (issue 11).

    tests/service/test_storage_exposure.py runs every probe on the suite's own SeaweedFS;
    this checks that the stack's `start_s3` runs it the same way."""
    import http.client
    import shlex
    import socket
    import uuid

    import boto3
    from botocore.config import Config

    settings: dict[str, str] = {}
    for line in (local_stack_info.local_dir / "stack.env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name.isidentifier() and value:
            settings[name] = shlex.split(value)[0]
    s3 = boto3.client(
        "s3",
        endpoint_url=local_stack_info.urls["s3"],
        aws_access_key_id=settings["S3_ACCESS_KEY"],
        aws_secret_access_key=settings["S3_SECRET_KEY"],
        region_name=settings["S3_REGION"],
        config=Config(s3={"addressing_style": "path"}),
    )
    bucket, key = settings["S3_BUCKET"], f"e2e-exposure/{uuid.uuid4().hex}.mp4"
    body = b"private dance video " + uuid.uuid4().bytes
    s3.put_object(Bucket=bucket, Key=key, Body=body)

    def call(port_name: str, method: str, path: str, data: bytes | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", local_stack_info.ports[port_name], timeout=10)
        try:
            connection.request(method, path, body=data, headers={"Accept": "application/json"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    refused = {401, 403, 404, 405}
    for port_name, method, path, data in [
        ("WEED_FILER_PORT", "GET", f"/buckets/{bucket}/e2e-exposure/", None),
        ("WEED_FILER_PORT", "GET", f"/buckets/{bucket}/{key}", None),
        ("WEED_FILER_PORT", "PUT", f"/buckets/{bucket}/e2e-exposure/evil.txt", b"evil"),
        ("WEED_FILER_PORT", "DELETE", f"/buckets/{bucket}/{key}", None),
        ("WEED_MASTER_PORT", "GET", "/dir/assign", None),
        ("WEED_MASTER_PORT", "GET", f"/col/delete?collection={bucket}", None),
        ("WEED_VOLUME_PORT", "GET", "/ui/index.html", None),
        ("WEED_ADMIN_PORT", "GET", "/", None),
    ]:
        status, answer = call(port_name, method, path, data)
        assert status in refused, (port_name, method, path, status, answer[:200])
        assert key.encode() not in answer and body not in answer
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="e2e-exposure/")
    assert [item["Key"] for item in listed.get("Contents", [])] == [key]
    # gRPC (each port + 10000) needs the stack's client certificate: a bare client gets hung up on.
    with socket.create_connection(("127.0.0.1", local_stack_info.ports["WEED_FILER_PORT"] + 10000), timeout=10) as raw:
        raw.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
        try:
            first = raw.recv(64)
        except ConnectionResetError:
            first = b""
        assert first[3:4] != b"\x04", "the filer speaks plaintext gRPC"
    # Its keys, certificates and data stay with the user who runs the stack.
    # The stack's folder as a whole too: secrets.env, the admin key, logs and videos in progress.
    stack_dir = local_stack_info.local_dir
    for private in (stack_dir, stack_dir / "run" / "seaweedfs", stack_dir / "s3"):
        assert private.stat().st_mode & 0o077 == 0, private
    s3.delete_object(Bucket=bucket, Key=key)
