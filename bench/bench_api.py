"""Benchmark the API path: upload streaming, mock end-to-end time, poll latency.

    .venv/bin/python bench/bench_api.py [--upload-mb 1024] [--pollers 200]

Starts its own real Redis and SeaweedFS (as the tests do), the API under
uvicorn and one mock-mode worker, each as its own process, then prints:

1. a large upload through POST /analyze: throughput and the API process's
   peak RSS, against a direct boto3 multipart upload of the same bytes to the
   same S3 server in this script (the baseline: what storage alone allows);
2. upload → `succeeded` for a 10 s 720p 30 fps clip in mock mode, against a
   plain decode + H.264 encode of the same clip here (the render floor);
3. GET /jobs/{id} latency p50/p99 with N concurrent pollers (each polling
   every 0.5 s), against GET / (no Redis) under the same load.

Figures, not assertions: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.settings import Settings  # noqa: E402
from shared.storage import Storage  # noqa: E402
from tests.conftest import settings_for  # noqa: E402
from tests.services import free_port, launch_redis, launch_seaweedfs  # noqa: E402
from tests.synthetic import make_clip  # noqa: E402

CHUNK = 1024 * 1024


def env_for(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": settings.redis_url,
            "S3_ENDPOINT_URL": settings.s3_endpoint_url,
            "S3_PUBLIC_ENDPOINT_URL": settings.s3_public_endpoint_url,
            "S3_ACCESS_KEY": settings.s3_access_key,
            "S3_SECRET_KEY": settings.s3_secret_key,
            "S3_BUCKET": settings.s3_bucket,
            "USE_MOCK_ANALYSIS": "true",
            "MAX_UPLOAD_MB": "4096",
        }
    )
    return env


class RssSampler:
    """Peak resident memory of a process, from the kernel's own high-water mark."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _field(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) * 1024
        return 0

    def current(self) -> int:
        return self._field("VmRSS:")

    def peak(self) -> int:
        return self._field("VmHWM:")

    def reset_peak(self) -> None:
        # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")


def video_like_stream(total: int) -> Iterator[bytes]:
    """`total` bytes that start like an MP4 (so the magic-byte check passes)."""
    head = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
    yield head
    sent = len(head)
    block = os.urandom(CHUNK)
    while sent < total:
        piece = block[: min(CHUNK, total - sent)]
        sent += len(piece)
        yield piece


def bench_upload(api: str, api_pid: int, settings: Settings, megabytes: int) -> None:
    total = megabytes * CHUNK
    storage = Storage(settings)

    start = time.perf_counter()
    writer = storage.multipart_writer("bench/direct.bin", "application/octet-stream")
    for piece in video_like_stream(total):
        writer.write(piece)
    writer.complete()
    direct_s = time.perf_counter() - start
    storage.delete("bench/direct.bin")

    sampler = RssSampler(api_pid)
    sampler.reset_peak()
    before = sampler.current()
    boundary = "benchboundary"
    prefix = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    suffix = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield prefix
        yield from video_like_stream(total)
        yield suffix

    start = time.perf_counter()
    response = httpx.post(
        f"{api}/analyze",
        content=body(),
        headers={
            "content-type": f"multipart/form-data; boundary={boundary}",
            "content-length": str(len(prefix) + total + len(suffix)),
        },
        timeout=600,
    )
    api_s = time.perf_counter() - start
    peak = sampler.peak()
    job = response.json()
    print(f"\n[1] upload of {megabytes} MB through POST /analyze -> HTTP {response.status_code}")
    print(f"    API throughput      {megabytes / api_s:8.1f} MB/s  ({api_s:.1f} s)")
    print(f"    direct S3 baseline  {megabytes / direct_s:8.1f} MB/s  ({direct_s:.1f} s)  ratio {direct_s / api_s:.2f}")
    print(f"    API RSS before      {before / CHUNK:8.1f} MB")
    print(f"    API peak RSS        {peak / CHUNK:8.1f} MB   (goal < 150 MB)")
    if "job_id" in job:
        httpx.post(f"{api}/jobs/{job['job_id']}/cancel")


def bench_mock_job(api: str, work: Path) -> str:
    clip = make_clip(work / "clip720.mp4", seconds=10, fps=30, size=(1280, 720), audio=True)

    import av  # the render floor: decode and re-encode the same clip here

    start = time.perf_counter()
    with av.open(str(clip)) as source, av.open(str(work / "floor.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "veryfast"}
        for frame in source.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode(None))
    floor_s = time.perf_counter() - start

    start = time.perf_counter()
    with clip.open("rb") as handle:
        job = httpx.post(f"{api}/analyze", files={"file": ("clip720.mp4", handle, "video/mp4")}, timeout=60).json()
    uploaded_s = time.perf_counter() - start
    status = {}
    while time.perf_counter() - start < 120:
        status = httpx.get(f"{api}/jobs/{job['job_id']}").json()
        if status["status"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.05)
    total_s = time.perf_counter() - start
    print(f"\n[2] 10 s 720p30 clip, mock mode: upload -> {status.get('status')}")
    print(f"    upload              {uploaded_s:8.2f} s")
    print(f"    upload -> final     {total_s:8.2f} s   (goal < 5 s)")
    print(f"    decode+encode floor {floor_s:8.2f} s   ratio {total_s / floor_s:.2f}x the floor")
    return str(job["job_id"])


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
    """One keep-alive GET on a raw connection: a load generator far cheaper than an HTTP library,
    so the figures measure the server, not the client sharing its two cores."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12]
    if status != b"200":
        raise RuntimeError(f"HTTP {status.decode()}")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)


async def _pollers(url: str, count: int, seconds: float, interval: float) -> list[float]:
    parsed = httpx.URL(url)
    request = f"GET {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n\r\n".encode()
    latencies: list[float] = []

    async def poll(offset: float) -> None:
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        await asyncio.sleep(offset)
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            began = time.perf_counter()
            await _get(reader, writer, request)
            latencies.append(time.perf_counter() - began)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))
        writer.close()

    await asyncio.gather(*(poll(i * interval / count) for i in range(count)))
    return latencies


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.99)] * 1000


def bench_polling(api: str, job_id: str, pollers: int, seconds: float = 10, interval: float = 0.5) -> None:
    base = asyncio.run(_pollers(f"{api}/", pollers, seconds, interval))
    jobs = asyncio.run(_pollers(f"{api}/jobs/{job_id}", pollers, seconds, interval))
    b50, b99 = _percentiles(base)
    j50, j99 = _percentiles(jobs)
    print(f"\n[3] {pollers} concurrent pollers, one poll each per {interval} s for {seconds:.0f} s")
    print(f"    GET /jobs/{{id}}  p50 {j50:6.1f} ms  p99 {j99:6.1f} ms  ({len(jobs)} requests; goal p99 < 20 ms)")
    print(f"    GET / baseline   p50 {b50:6.1f} ms  p99 {b99:6.1f} ms  ({len(base)} requests)")
    print(f"    ratio p99 {j99 / b99:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upload-mb", type=int, default=1024)
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--skip-upload", action="store_true", help="skip the large upload (the slowest part)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        redis = launch_redis(work / "redis")
        s3 = launch_seaweedfs(work / "s3")
        processes: list[subprocess.Popen[bytes]] = []
        try:
            s3.bucket = "bench"
            settings = settings_for(s3, redis_url=redis.url, key_prefix="bench", queue_name="bench")
            Storage(settings).ensure_bucket()
            env = env_for(settings) | {"QUEUE_NAME": "bench", "KEY_PREFIX": "bench", "WORK_DIR": str(work)}
            port = free_port()
            api = f"http://127.0.0.1:{port}"
            log = (work / "api.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory",
                     "--port", str(port), "--log-level", "warning"],
                    cwd=ROOT, env=env, stdout=log, stderr=log,
                )
            )  # fmt: skip
            processes.append(
                subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=log, stderr=log)
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{api}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            print(f"stack up: API {api}, Redis {redis.url}, S3 {s3.endpoint_url}; cores: {os.cpu_count()}")
            job_id = bench_mock_job(api, work)
            bench_polling(api, job_id, args.pollers)
            if not args.skip_upload:
                bench_upload(api, processes[0].pid, settings, args.upload_mb)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
            threading.Thread(target=s3.stop).start()
            redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
