"""SeaweedFS hands out data only through S3 and its keys (issue 11), on a real server.

The server is the suite's own `s3_server`, started as the local stack and the Docker
stand-in start theirs (tests/services.py: `weed -config_dir=... mini -disableHttp`, the
security.toml of docker/standins/seaweedfs-security.sh). Every request below is one a web page
in the user's browser (cross-site form posts, or DNS rebinding to read the answers) or another
user of the machine could send: plain HTTP with no credentials, or a bare gRPC connection.
What stays open on loopback is asserted too: read-only status pages, no object names or bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.services import GRPC_OFFSET, S3Server, executable

pytestmark = pytest.mark.service

COMPONENTS = ("master", "volume", "filer", "s3", "admin")
# The first frame an HTTP/2 (gRPC) server sends: a SETTINGS frame (type 4 at byte 3).
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")


@dataclass
class Stored:
    """One object put through S3 into a bucket of its own, and where SeaweedFS keeps it."""

    s3: S3Server
    client: BaseClient
    bucket: str
    key: str
    body: bytes
    fid: str  # the volume server's file id of its one chunk

    def url(self, component: str, path: str) -> tuple[str, int, str]:
        return "127.0.0.1", self.s3.ports[component], path

    def still_intact(self) -> bool:
        return bool(self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read() == self.body)

    def s3_keys(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.bucket)
        return [item["Key"] for item in listing.get("Contents", [])]


def s3_client(s3: S3Server, secret_key: str | None = None) -> BaseClient:
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=secret_key or s3.secret_key,
        region_name=s3.region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def weed_shell(s3: S3Server, command: str) -> str:
    """One `weed shell` command as the operator: with the stack's gRPC client certificate."""
    assert s3.security_dir is not None
    master, filer = s3.ports["master"], s3.ports["filer"]
    try:
        done = subprocess.run(
            [executable("weed"), f"-config_dir={s3.security_dir}", "shell",
             f"-master=127.0.0.1:{master}.{master + GRPC_OFFSET}", f"-filer=127.0.0.1:{filer}.{filer + GRPC_OFFSET}"],
            input=command + "\n", capture_output=True, text=True, timeout=30, cwd=s3.security_dir, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("weed shell, with the stack's certificate, could not reach SeaweedFS over gRPC (no mutual TLS?)")
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def stored(s3_server: S3Server) -> Iterator[Stored]:
    client = s3_client(s3_server)
    bucket = f"exposure-{uuid.uuid4().hex[:10]}"  # its own collection, which /col/delete would drop
    client.create_bucket(Bucket=bucket)
    key, body = "videos/dancer.mp4", b"private dance video " + os.urandom(64).hex().encode()
    client.put_object(Bucket=bucket, Key=key, Body=body)
    meta = weed_shell(s3_server, f"fs.meta.cat /buckets/{bucket}/{key}")
    found = re.search(r'"fileId":\s*"([0-9]+,[0-9a-f]+)"', meta)
    assert found, f"no file id in fs.meta.cat's answer:\n{meta}"
    yield Stored(s3_server, client, bucket, key, body, found[1])


def request(
    host: str, port: int, path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None
) -> tuple[int, bytes]:
    """One plain HTTP request, no credentials, no redirects followed."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def form_post(text: bytes, filename: str = "evil.txt") -> tuple[bytes, dict]:
    """What an HTML form on any web site can POST cross-site without a preflight."""
    boundary = "----formboundary7MA4YWxkTrZu0gW"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
    body = (head + "Content-Type: text/plain\r\n\r\n").encode() + text + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}", "Origin": "http://evil.example"}


REFUSED = {401, 403, 404, 405}


# --- the filer: its HTTP API is off (-disableHttp) and would need the filer JWT anyway ------------


def test_the_filer_port_lists_nothing(stored: Stored) -> None:
    for path in ("/", "/buckets/", f"/buckets/{stored.bucket}/", f"/buckets/{stored.bucket}/videos/"):
        for accept in ("application/json", "text/html"):
            status, body = request(*stored.url("filer", path), headers={"Accept": accept})
            assert status in REFUSED, (path, status, body[:200])
            assert b"dancer.mp4" not in body and stored.bucket.encode() not in body


def test_the_filer_port_does_not_read_an_object(stored: Stored) -> None:
    path = f"/buckets/{stored.bucket}/{stored.key}"
    for method, headers in (("GET", {}), ("HEAD", {}), ("GET", {"Range": "bytes=0-15"})):
        status, body = request(*stored.url("filer", path), method=method, headers=headers)
        assert status in REFUSED, (method, headers, status)
        assert b"private dance video" not in body
    # Nor with the metadata view, which would name its chunks.
    status, body = request(*stored.url("filer", path + "?metadata=true"))
    assert status in REFUSED and stored.fid.encode() not in body


def test_the_filer_port_writes_nothing(stored: Stored) -> None:
    folder = f"/buckets/{stored.bucket}/videos/"
    form, form_headers = form_post(b"written through the filer")
    attempts = [
        ("POST", folder, form, form_headers),  # a cross-site <form enctype="multipart/form-data">
        ("POST", folder + "evil.txt", form, form_headers),
        ("POST", folder + "evil2.txt", b"plain text", {"Content-Type": "text/plain"}),  # another simple request
        ("PUT", folder + "evil3.txt", b"raw body", {}),
        ("POST", f"/buckets/{stored.bucket}/newdir/?op=mkdir", b"", {}),
        ("POST", "/.tus/" + stored.bucket, b"", {"Tus-Resumable": "1.0.0", "Upload-Length": "5"}),
        # Overwriting the object itself.
        ("PUT", f"/buckets/{stored.bucket}/{stored.key}", b"replaced", {}),
        ("POST", f"/buckets/{stored.bucket}/{stored.key}", form, form_headers),
    ]
    for method, path, body, headers in attempts:
        status, answer = request(*stored.url("filer", path), method=method, body=body, headers=headers)
        assert status in REFUSED, (method, path, status, answer[:200])
    assert stored.s3_keys() == [stored.key]
    assert stored.still_intact()


def test_the_filer_port_deletes_nothing(stored: Stored) -> None:
    for path in (
        f"/buckets/{stored.bucket}/{stored.key}",
        f"/buckets/{stored.bucket}/videos/?recursive=true",
        f"/buckets/{stored.bucket}?recursive=true&ignoreRecursiveError=true",
    ):
        status, body = request(*stored.url("filer", path), method="DELETE")
        assert status in REFUSED, (path, status, body[:200])
    assert stored.still_intact()


def test_the_filer_unix_socket_is_as_closed(stored: Stored) -> None:
    """weed also serves the filer's HTTP API on /tmp/seaweedfs-filer-PORT.sock."""
    path = Path(f"/tmp/seaweedfs-filer-{stored.s3.ports['filer']}.sock")
    if not path.exists():
        pytest.skip(f"no {path} (this weed serves no filer socket)")

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(10)
            self.sock.connect(str(path))

    for method, target in (("GET", f"/buckets/{stored.bucket}/"), ("GET", f"/buckets/{stored.bucket}/{stored.key}"),
                           ("DELETE", f"/buckets/{stored.bucket}/{stored.key}")):  # fmt: skip
        connection = UnixConnection("localhost", timeout=10)
        try:
            connection.request(method, target)
            response = connection.getresponse()
            assert response.status in REFUSED and b"private dance video" not in response.read()
        finally:
            connection.close()
    assert stored.still_intact()


# --- the master: its HTTP API is off; with it on, anyone could get write tokens or drop buckets ----


def test_the_master_port_assigns_no_file_ids_and_takes_no_uploads(stored: Stored) -> None:
    for method, path in (("GET", "/dir/assign"), ("POST", "/dir/assign?count=1"), ("GET", "/vol/grow?count=1")):
        status, body = request(*stored.url("master", path), method=method)
        assert status in REFUSED, (path, status, body[:200])
        assert b"fid" not in body
    form, headers = form_post(b"uploaded through the master")
    status, body = request(*stored.url("master", "/submit"), method="POST", body=form, headers=headers)
    assert status in REFUSED, (status, body[:200])


def test_the_master_port_does_not_drop_a_bucket_s_collection(stored: Stored) -> None:
    # Without -disableHttp this one GET (an <img src=...> on any page would do) deleted every
    # volume of the bucket, JWT keys or not: S3 then failed to read any object in it.
    for method in ("GET", "POST"):
        status, body = request(*stored.url("master", f"/col/delete?collection={stored.bucket}"), method=method)
        assert status in REFUSED, (method, status, body[:200])
    status, _ = request(*stored.url("master", "/vol/vacuum?garbageThreshold=0.0001"))
    assert status in REFUSED
    assert stored.still_intact()


def test_the_master_port_says_where_no_file_is(stored: Stored) -> None:
    volume = stored.fid.split(",")[0]
    for path in (f"/dir/lookup?fileId={stored.fid}", f"/dir/lookup?volumeId={volume}", f"/{stored.fid}",
                 "/dir/status", "/vol/status", f"/collection/info?collection={stored.bucket}"):  # fmt: skip
        status, body = request(*stored.url("master", path))
        assert status in REFUSED, (path, status, body[:200])


# --- the volume server: every needle needs a token signed with the stack's key ------------------


def forged_jwt(fid: str) -> str:
    """A well-formed HS256 token for the file id, signed with a key that is not the server's."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = part(json.dumps({"fid": fid, "exp": int(time.time()) + 60}).encode())
    signature = hmac.new(os.urandom(32), f"{head}.{claims}".encode(), hashlib.sha256).digest()
    return f"{head}.{claims}.{part(signature)}"


def test_the_volume_port_does_not_read_a_stored_needle(stored: Stored) -> None:
    for headers in ({}, {"Range": "bytes=0-15"}, {"Authorization": f"Bearer {forged_jwt(stored.fid)}"}):
        for method in ("GET", "HEAD"):
            status, body = request(*stored.url("volume", f"/{stored.fid}"), method=method, headers=headers)
            assert status == 401, (method, headers, status)
            assert b"private dance video" not in body
    status, _ = request(*stored.url("volume", f"/{stored.fid}?jwt={forged_jwt(stored.fid)}"))
    assert status == 401


def test_the_volume_port_does_not_overwrite_or_delete_a_needle(stored: Stored) -> None:
    form, headers = form_post(b"overwritten through the volume server")
    volume = stored.fid.split(",")[0]
    attempts = [
        ("POST", f"/{stored.fid}", form, headers),
        ("PUT", f"/{stored.fid}", b"raw", {}),
        ("DELETE", f"/{stored.fid}", None, {}),
        ("DELETE", f"/{stored.fid}", None, {"Authorization": f"Bearer {forged_jwt(stored.fid)}"}),
        ("POST", f"/{volume},01deadbeef", form, headers),  # a new needle in the same volume
    ]
    for method, path, body, extra in attempts:
        status, answer = request(*stored.url("volume", path), method=method, body=body, headers=extra)
        assert status == 401, (method, path, status, answer[:200])
    assert stored.still_intact()


def test_the_volume_ui_is_off(stored: Stored) -> None:
    for path in ("/ui/index.html", "/", "/stats/disk"):
        status, _ = request(*stored.url("volume", path))
        assert status in REFUSED, (path, status)


# --- the admin server: no UI (-admin.ui=false), no API -----------------------------------------


def test_the_admin_port_has_no_ui_or_api(stored: Stored) -> None:
    for path in ("/", "/admin", "/object-store/buckets", "/api/cluster/topology", "/api/s3/buckets",
                 f"/api/s3/buckets/{stored.bucket}", "/login", "/maintenance"):  # fmt: skip
        status, body = request(*stored.url("admin", path))
        assert status in REFUSED, (path, status, body[:200])
    status, _ = request(*stored.url("admin", f"/api/s3/buckets/{stored.bucket}"), method="DELETE")
    assert status in REFUSED
    assert stored.still_intact()


# --- what stays open on loopback: status pages, with no object names and no bytes --------------


@pytest.mark.parametrize(
    ("component", "path"),
    [("master", "/"), ("master", "/cluster/status"), ("master", "/healthz"), ("volume", "/status"),
     ("volume", "/healthz"), ("admin", "/health"), ("admin", "/metrics")],
)  # fmt: skip
def test_what_still_answers_anonymously_is_read_only_status(stored: Stored, component: str, path: str) -> None:
    status, body = request(*stored.url(component, path))
    assert status == 200
    assert stored.key.encode() not in body and b"private dance video" not in body
    assert stored.fid.encode() not in body
    # And no page on another site may read it (no CORS grant).
    connection = http.client.HTTPConnection(*stored.url(component, path)[:2], timeout=10)
    try:
        connection.request("GET", path, headers={"Origin": "http://evil.example"})
        response = connection.getresponse()
        response.read()
        assert response.getheader("Access-Control-Allow-Origin") is None
    finally:
        connection.close()


# --- gRPC: mutual TLS, with a certificate only the stack has --------------------------------------


Address = str | tuple[str, int]


def grpc_endpoints(s3: S3Server) -> list[tuple[str, socket.AddressFamily, Address]]:
    """Each gRPC port, and the Unix socket weed also serves it on in /tmp."""
    endpoints: list[tuple[str, socket.AddressFamily, Address]] = []
    for name in COMPONENTS:
        port = s3.ports[name] + GRPC_OFFSET
        endpoints.append((f"{name} gRPC :{port}", socket.AF_INET, ("127.0.0.1", port)))
        unix = f"/tmp/seaweedfs-{name}-grpc-{port}.sock"
        if os.path.exists(unix):
            endpoints.append((unix, socket.AF_UNIX, unix))
    return endpoints


def speaks_grpc(family: socket.AddressFamily, address: Address, context: ssl.SSLContext | None) -> bool:
    """Whether the server answers the start of an HTTP/2 connection with its SETTINGS frame."""
    with socket.socket(family, socket.SOCK_STREAM) as raw:
        raw.settimeout(10)
        raw.connect(address)
        sock = context.wrap_socket(raw) if context else raw
        sock.sendall(H2_PREFACE)
        return sock.recv(64)[3:4] == b"\x04"


def test_grpc_answers_nobody_without_the_client_certificate(s3_server: S3Server) -> None:
    assert s3_server.security_dir is not None
    ca = s3_server.security_dir / "ca.crt"
    for name, family, address in grpc_endpoints(s3_server):
        # A bare gRPC client (as `weed shell` with no security.toml): it hangs up.
        try:
            plain = speaks_grpc(family, address, None)
        except ConnectionResetError:
            plain = False
        assert not plain, f"{name} speaks plaintext gRPC"
        # TLS without a client certificate: refused ("certificate required", or a hang-up).
        context = ssl.create_default_context(cafile=str(ca))
        context.check_hostname = False
        context.set_alpn_protocols(["h2"])
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            speaks_grpc(family, address, context)
        # With the stack's certificate it speaks gRPC: the checks above reached a live server.
        context.load_cert_chain(s3_server.security_dir / "node.crt", s3_server.security_dir / "node.key")
        assert speaks_grpc(family, address, context), name


def test_the_security_files_are_private(s3_server: S3Server) -> None:
    assert s3_server.security_dir is not None
    assert s3_server.security_dir.stat().st_mode & 0o777 == 0o700
    for path in s3_server.security_dir.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    names = {path.name for path in s3_server.security_dir.iterdir()}
    assert names == {"security.toml", "ca.crt", "node.crt", "node.key"}, "the CA's key is gone once used"


# --- S3: the keys, and only the keys ---------------------------------------------------------------


def test_s3_refuses_requests_without_keys(stored: Stored) -> None:
    endpoint = stored.s3.endpoint_url.removeprefix("http://")
    host, port = endpoint.split(":")
    form, headers = form_post(b"anonymous")
    for method, path, body, extra in (
        ("GET", f"/{stored.bucket}/{stored.key}", None, {}),
        ("GET", f"/{stored.bucket}/", None, {}),
        ("GET", "/", None, {}),
        ("PUT", f"/{stored.bucket}/anon.txt", b"anonymous", {}),
        ("POST", f"/{stored.bucket}/", form, headers),  # S3's browser-form upload, with no policy
        ("DELETE", f"/{stored.bucket}/{stored.key}", None, {}),
    ):
        status, answer = request(host, int(port), path, method=method, body=body, headers=extra)
        assert status in {400, 403}, (method, path, status, answer[:200])
        assert b"private dance video" not in answer
    assert stored.s3_keys() == [stored.key]
    assert stored.still_intact()


def test_s3_refuses_a_wrong_signature_and_serves_the_right_one(stored: Stored) -> None:
    wrong = s3_client(stored.s3, secret_key="not-" + stored.s3.secret_key)
    for call in (
        lambda: wrong.get_object(Bucket=stored.bucket, Key=stored.key),
        lambda: wrong.list_objects_v2(Bucket=stored.bucket),
        lambda: wrong.put_object(Bucket=stored.bucket, Key="wrong.txt", Body=b"x"),
        lambda: wrong.delete_object(Bucket=stored.bucket, Key=stored.key),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert stored.still_intact()
    # The right keys: reads, ranges and presigned links all work through the secured server.
    part = stored.client.get_object(Bucket=stored.bucket, Key=stored.key, Range="bytes=8-12")["Body"].read()
    assert part == stored.body[8:13]
    url = stored.client.generate_presigned_url(
        "get_object", Params={"Bucket": stored.bucket, "Key": stored.key}, ExpiresIn=60
    )
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == stored.body


# --- every port: on loopback, and no other --------------------------------------------------------


def listening_ports_of(pid: int) -> dict[int, str]:
    """Port -> local address of every TCP socket process `pid` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # LISTEN
                address, port = local.split(":")
                found[int(port, 16)] = address
    return found


def test_seaweedfs_listens_on_loopback_only_and_on_no_other_port(s3_server: S3Server) -> None:
    listening = listening_ports_of(s3_server.server.process.pid)
    expected = {port for name in COMPONENTS for port in (s3_server.ports[name], s3_server.ports[name] + GRPC_OFFSET)}
    assert set(listening) == expected, "webdav, iceberg, lance, metrics or debug ports must stay off"
    # 127.0.0.1 in /proc/net/tcp's little-endian hex.
    assert set(listening.values()) == {"0100007F"}, listening
