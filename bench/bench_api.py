"""Benchmark the API path: upload streaming, mock end-to-end time, poll latency.

    .venv/bin/python bench/bench_api.py [--upload-mb 1024] [--pollers 200]

Starts its own real Redis and SeaweedFS (as the tests do), the API under
uvicorn and one mock-mode worker, each as its own process, then prints the
figures below. The API runs as a user runs it: API keys required, one
SECRET_KEY shared by every API process started here, and an admin key made in
the bench's Redis and sent on every request (the raw pollers' too).

1. a large upload through POST /analyze: throughput and the API process's
   peak RSS, against a direct boto3 multipart upload of the same bytes to the
   same S3 server in this script (the baseline: what storage alone allows);
2. upload → `succeeded` for a 10 s 720p 30 fps clip in mock mode, against a
   plain decode + H.264 encode of the same clip here (the render floor);
3. GET /jobs/{id} latency p50/p99 with N concurrent pollers (each polling
   every 0.5 s), against GET / (no Redis) under the same load;
4. polling while the worker is busy: 100 pollers on 20 queued mock jobs, first
   with no worker (idle), then with one mock worker chewing through them, at
   niceness 0 and at 10 (what worker/__main__.py applies), repeated to show the
   spread. Optional variants start the worker in its own session, as
   `manage.sh local` does, where the kernel's autogroups make niceness alone
   useless (see `Variant`), and an API whose `app.state` dependencies are
   async (no threadpool hop per dependency).

    .venv/bin/python bench/bench_api.py --busy-only --variants all

Figures, not assertions: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.apikeys import ApiKeyStore  # noqa: E402
from shared.keys import RedisKeys  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.storage import Storage  # noqa: E402
from tests.conftest import settings_for  # noqa: E402
from tests.services import free_port, launch_redis, launch_seaweedfs  # noqa: E402
from tests.synthetic import make_clip  # noqa: E402

CHUNK = 1024 * 1024
# MAX_QUEUED_JOBS_PER_KEY for the bench. Section [4] queues all --busy-jobs jobs (20 by default, as
# many as asked) on one key before a worker starts, and a cancel that failed leaves a row's jobs
# counted in the next row's: with the default cap (20) the bench would measure 429 RATE_LIMITED,
# not polling.
MAX_QUEUED_JOBS = 10_000


def env_for(settings: Settings, secret_key: str) -> dict[str, str]:
    """The environment of every API (and worker) process: keys required, one shared SECRET_KEY."""
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
            "API_AUTH": "keys",
            "SECRET_KEY": secret_key,
            "MAX_QUEUED_JOBS_PER_KEY": str(MAX_QUEUED_JOBS),
        }
    )
    return env


def admin_key(settings: Settings) -> str:
    """A new admin key in the bench's Redis and key prefix, as `python -m shared.apikeys create` makes one."""
    client = Redis.from_url(settings.redis_url)
    try:
        return ApiKeyStore(client, RedisKeys(settings.key_prefix)).create("bench", admin=True)[1]
    finally:
        client.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


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


def bench_upload(api: str, api_pid: int, settings: Settings, megabytes: int, headers: dict[str, str]) -> None:
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
            **headers,
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
        httpx.post(f"{api}/jobs/{job['job_id']}/cancel", headers=headers)


def bench_mock_job(api: str, work: Path, headers: dict[str, str]) -> str:
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
        response = httpx.post(
            f"{api}/analyze", files={"file": ("clip720.mp4", handle, "video/mp4")}, headers=headers, timeout=60
        )
    job = response.raise_for_status().json()
    uploaded_s = time.perf_counter() - start
    status = {}
    while time.perf_counter() - start < 120:
        status = httpx.get(f"{api}/jobs/{job['job_id']}", headers=headers).raise_for_status().json()
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


async def _pollers(url: str | list[str], count: int, seconds: float, interval: float, key: str) -> list[float]:
    """Latencies of `count` keep-alive pollers; poller i polls urls[i % len(urls)] (all on one server).

    Every request carries the API key, as a client's would (GET / ignores it)."""
    urls = [url] if isinstance(url, str) else url
    parsed = [httpx.URL(u) for u in urls]
    requests = [
        f"GET {u.raw_path.decode()} HTTP/1.1\r\nHost: {u.host}\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
        for u in parsed
    ]
    latencies: list[float] = []

    async def poll(index: int, offset: float) -> None:
        request = requests[index % len(requests)]
        reader, writer = await asyncio.open_connection(parsed[0].host, parsed[0].port)
        await asyncio.sleep(offset)
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            began = time.perf_counter()
            await _get(reader, writer, request)
            latencies.append(time.perf_counter() - began)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))
        writer.close()

    await asyncio.gather(*(poll(i, i * interval / count) for i in range(count)))
    return latencies


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.99)] * 1000


def bench_polling(api: str, job_id: str, pollers: int, key: str, seconds: float = 10, interval: float = 0.5) -> None:
    base = asyncio.run(_pollers(f"{api}/", pollers, seconds, interval, key))
    jobs = asyncio.run(_pollers(f"{api}/jobs/{job_id}", pollers, seconds, interval, key))
    b50, b99 = _percentiles(base)
    j50, j99 = _percentiles(jobs)
    print(f"\n[3] {pollers} concurrent pollers, one poll each per {interval} s for {seconds:.0f} s")
    print(f"    GET /jobs/{{id}}  p50 {j50:6.1f} ms  p99 {j99:6.1f} ms  ({len(jobs)} requests; goal p99 < 20 ms)")
    print(f"    GET / baseline   p50 {b50:6.1f} ms  p99 {b99:6.1f} ms  ({len(base)} requests)")
    print(f"    ratio p99 {j99 / b99:.2f}")


# --- [4] polling while the worker is busy ------------------------------------

# Rebuilds backend.deps' `app.state` aliases with async getters before the routes
# import them, then runs uvicorn: the API as it would be if `from_state` returned
# an `async def`. FastAPI runs a sync dependency in the threadpool, so each
# GET /jobs/{id} makes four thread hops (settings, reader, store, storage) that
# all wait for CPU when a worker is busy; an async getter runs on the event loop.
_ASYNC_DEPS_API = """
import sys, typing
from fastapi import Depends
import backend.deps as deps

def from_state(name):
    async def dependency(request: deps.Request):
        return getattr(request.app.state, name)
    dependency.__name__ = f"get_{name}"
    return dependency

for alias, name in {"SettingsDep": "settings", "StoreDep": "store", "ReaderDep": "reader",
                    "StorageDep": "storage", "QueueDep": "queue", "RedisDep": "redis"}.items():
    kind = typing.get_args(getattr(deps, alias))[0]
    setattr(deps, alias, typing.Annotated[kind, Depends(from_state(name))])
import uvicorn
uvicorn.run("backend.main:create_app", factory=True, port=int(sys.argv[1]), log_level="warning")
"""


def _autogroups_on() -> bool:
    path = Path("/proc/sys/kernel/sched_autogroup_enabled")
    return path.exists() and path.read_text().strip() == "1"


@dataclass(frozen=True)
class Variant:
    """How the worker (and the API) run for one row of section [4].

    own_session: the worker in its own session, as `manage.sh local` starts it
    (setsid). With the kernel's autogroups on (/proc/sys/kernel/sched_autogroup_enabled),
    each session is a scheduling group and niceness only ranks threads inside
    their group, so a nice-10 worker in its own session still gets the same CPU
    share as the API. autogroup_nice sets the group's own niceness
    (/proc/<pid>/autogroup), which does rank it against the API's group.
    """

    key: str
    label: str
    nice: int
    own_session: bool = False
    autogroup_nice: int | None = None
    async_deps: bool = False


VARIANTS = [
    Variant("nice0", "worker nice 0", 0),
    Variant("nice10", "worker nice 10 (what the code now does)", 10),
    Variant("session", "worker nice 10, own session (manage.sh)", 10, own_session=True),
    Variant("autogroup", "worker nice 10, own session + autogroup nice 10", 10, own_session=True, autogroup_nice=10),
    Variant("asyncdeps0", "worker nice 0, API with async deps", 0, async_deps=True),
    Variant("asyncdeps10", "worker nice 10, API with async deps", 10, async_deps=True),
]
DEFAULT_VARIANTS = "nice0,nice10"


class Stack:
    """The API and the worker of section [4], restarted as each variant needs."""

    def __init__(self, env: dict[str, str], work: Path, service_pids: dict[str, int], key: str) -> None:
        self.env = env  # API_AUTH=keys and the SECRET_KEY every API process of the bench shares
        self.key = key
        self.headers = bearer(key)
        self.service_pids = service_pids  # Redis and S3, whose CPU counts as ours
        self.work = work
        self.log = (work / "busy.log").open("wb")
        self.api_process: subprocess.Popen[bytes] | None = None
        self.async_deps = False
        self.api = ""
        self.worker: subprocess.Popen[bytes] | None = None

    def ensure_api(self, async_deps: bool) -> str:
        if self.api_process and self.api_process.poll() is not None:
            print(f"    the API exited (code {self.api_process.returncode}); its log ends:\n{self.log_tail()}")
            self.api_process = None
        if self.api_process and self.async_deps == async_deps:
            return self.api
        self.stop_api()
        port = free_port()
        if async_deps:
            command = [sys.executable, "-c", _ASYNC_DEPS_API, str(port)]
        else:
            command = [sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory",
                       "--port", str(port), "--log-level", "warning"]  # fmt: skip
        self.api_process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log)
        self.api, self.async_deps = f"http://127.0.0.1:{port}", async_deps
        wait_healthy(self.api)
        return self.api

    def start_worker(self, variant: Variant) -> subprocess.Popen[bytes]:
        # `nice -n` before exec: every thread the worker ever makes inherits it, as
        # when worker/__main__.py calls setpriority before anything starts a thread.
        # WORKER_NICE keeps that call (when it lands) from undoing the variant.
        command = ["nice", "-n", str(variant.nice), sys.executable, "-m", "worker"]
        env = self.env | {"WORKER_NICE": str(variant.nice)}
        self.worker = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=self.log, start_new_session=variant.own_session
        )
        if variant.autogroup_nice is not None:
            Path(f"/proc/{self.worker.pid}/autogroup").write_text(str(variant.autogroup_nice))
        return self.worker

    def log_tail(self, lines: int = 30) -> str:
        self.log.flush()
        text = (self.work / "busy.log").read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"      | {line}" for line in text)

    def stop_worker(self) -> None:
        if self.worker:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
            self.worker = None

    def stop_api(self) -> None:
        if self.api_process:
            self.api_process.terminate()
            self.api_process.wait(timeout=30)
            self.api_process = None

    def close(self) -> None:
        self.stop_worker()
        self.stop_api()
        self.log.close()


def wait_healthy(api: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API at {api} did not become healthy")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a whole process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds spent by every process on the machine (not idle, not iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def submit_jobs(api: str, clip: Path, count: int, headers: dict[str, str]) -> list[str]:
    ids = []
    with httpx.Client(base_url=api, timeout=60, headers=headers) as client:
        for _ in range(count):
            with clip.open("rb") as handle:
                response = client.post("/analyze", files={"file": ("clip720.mp4", handle, "video/mp4")})
            response.raise_for_status()
            ids.append(response.json()["job_id"])
    return ids


def statuses(api: str, ids: list[str], headers: dict[str, str]) -> list[dict[str, Any]]:
    with httpx.Client(base_url=api, timeout=30, headers=headers) as client:
        return [client.get(f"/jobs/{job_id}").raise_for_status().json() for job_id in ids]


def wait_until_busy(api: str, ids: list[str], headers: dict[str, str], timeout: float = 60) -> None:
    """Until the worker is decoding and encoding frames, not just starting up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s["status"] == "running" and (s.get("frames_done") or 0) > 0 for s in statuses(api, ids, headers)):
            return
        time.sleep(0.2)
    raise RuntimeError("the worker never started a job")


def cancel_all(api: str, ids: list[str], headers: dict[str, str]) -> None:
    for job_id in ids:
        for attempt in range(3):
            try:  # a fresh connection each time: one reset must not strand the rest of the queue
                # 409 for the jobs that already finished
                httpx.post(f"{api}/jobs/{job_id}/cancel", headers=headers, timeout=30)
                break
            except httpx.TransportError as exc:
                print(f"    cancel {job_id}: {exc!r} (attempt {attempt + 1})", flush=True)
                time.sleep(1)


@dataclass
class BusyRun:
    latencies: list[float]
    api_cpu_ms: float  # API process CPU per request
    worker_cores: float | None  # CPU the worker used, in cores
    others_cores: float  # CPU used by processes not of this benchmark (the shared machine's noise)
    jobs_left: int | None


def measure(stack: Stack, ids: list[str], pollers: int, seconds: float) -> BusyRun:
    api = stack.api
    assert stack.api_process is not None
    ours = {"api": stack.api_process.pid, "self": os.getpid(), **stack.service_pids}
    if stack.worker:
        ours["worker"] = stack.worker.pid
    urls = [f"{api}/jobs/{job_id}" for job_id in ids]
    before = {name: cpu_seconds(pid) for name, pid in ours.items()}
    machine_before, began = machine_busy_seconds(), time.perf_counter()
    latencies = asyncio.run(_pollers(urls, pollers, seconds, 0.5, stack.key))
    elapsed = time.perf_counter() - began
    used = {name: cpu_seconds(pid) - before[name] for name, pid in ours.items()}
    others = (machine_busy_seconds() - machine_before - sum(used.values())) / elapsed
    left = None
    if stack.worker:
        left = sum(s["status"] in ("queued", "running") for s in statuses(api, ids, stack.headers))
    worker = used["worker"] / elapsed if "worker" in used else None
    return BusyRun(latencies, used["api"] / len(latencies) * 1000, worker, max(others, 0.0), left)


def _report(repeat: int, label: str, run: BusyRun) -> BusyRun:
    """One line per measurement as it ends, so a run cut short still shows what it measured."""
    p50, p99 = _percentiles(run.latencies)
    worker = f"worker {run.worker_cores:.2f} cores, " if run.worker_cores is not None else ""
    print(
        f"    repeat {repeat + 1}, {label}: p50 {p50:.1f} p99 {p99:.1f} max {max(run.latencies) * 1000:.1f} ms; "
        f"{worker}others {run.others_cores:.2f} cores",
        flush=True,
    )
    return run


def bench_busy_polling(
    stack: Stack, clip: Path, variants: list[Variant], *, repeats: int, pollers: int, jobs: int, seconds: float
) -> None:
    """Section [4]: every repeat measures every row once, rows interleaved so noise spreads evenly."""
    rows: dict[str, list[BusyRun]] = {}
    for repeat in range(repeats):
        idle_done: set[bool] = set()
        for variant in variants:
            api = stack.ensure_api(variant.async_deps)
            ids = submit_jobs(api, clip, jobs, stack.headers)  # queued; nothing runs them until the worker starts
            if variant.async_deps not in idle_done:
                idle_done.add(variant.async_deps)
                label = "idle (no worker)" + (", API with async deps" if variant.async_deps else "")
                rows.setdefault(label, []).append(_report(repeat, label, measure(stack, ids, pollers, seconds)))
            stack.start_worker(variant)
            try:
                wait_until_busy(api, ids, stack.headers)
                label = "busy, " + variant.label
                rows.setdefault(label, []).append(_report(repeat, label, measure(stack, ids, pollers, seconds)))
            finally:
                cancel_all(api, ids, stack.headers)
                stack.stop_worker()

    print(
        f"\n[4] polling while the worker is busy: {pollers} pollers, one GET /jobs/{{id}} each per 0.5 s "
        f"for {seconds:.0f} s, over {jobs} mock jobs (10 s 720p30 clip each); {repeats} repeats"
    )
    print("    ms: p50 and max over all repeats; p99 of each repeat, and its spread (min-max) across repeats")
    print("    api: API CPU ms per request; worker, others: cores used by the worker, and by processes not of")
    print("    this benchmark (the shared machine's noise); left: fewest jobs not yet final when a window ended")
    width = max(
        len("p99 each repeat"),
        *(len(" / ".join(f"{_percentiles(r.latencies)[1]:.1f}" for r in runs)) for runs in rows.values()),
    )
    print(f"    {'':56} {'p50':>6} {'p99 each repeat':>{width}} {'p99 spread':>14} {'max':>8} {'api':>5} {'worker':>7} "
          f"{'others':>7} {'left':>5}")  # fmt: skip
    for label, runs in rows.items():
        every = [v for run in runs for v in run.latencies]
        p99s = [_percentiles(run.latencies)[1] for run in runs]
        p50 = _percentiles(every)[0]
        busy = [r.worker_cores for r in runs if r.worker_cores is not None]
        worker = f"{statistics.mean(busy):.2f}" if busy else "-"
        left = str(min(r.jobs_left or 0 for r in runs)) if busy else "-"
        print(
            f"    {label:56} {p50:6.1f} {' / '.join(f'{v:.1f}' for v in p99s):>{width}} "
            f"{f'{min(p99s):.1f}-{max(p99s):.1f}':>14} {max(every) * 1000:8.1f} "
            f"{statistics.mean(r.api_cpu_ms for r in runs):5.2f} {worker:>7} "
            f"{statistics.mean(r.others_cores for r in runs):7.2f} {left:>5}"
        )
    print("    goal: busy p99 < 50 ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upload-mb", type=int, default=1024)
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--skip-upload", action="store_true", help="skip the large upload (the slowest part)")
    parser.add_argument("--busy-only", action="store_true", help="run only section [4], polling while busy")
    parser.add_argument("--skip-busy", action="store_true", help="skip section [4]")
    parser.add_argument("--busy-pollers", type=int, default=100)
    parser.add_argument("--busy-jobs", type=int, default=20)
    parser.add_argument("--busy-seconds", type=float, default=20)
    parser.add_argument("--busy-repeats", type=int, default=3)
    parser.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help=f"rows of section [4], comma-separated, or 'all': {', '.join(v.key for v in VARIANTS)}",
    )
    args = parser.parse_args()
    keys = [v.key for v in VARIANTS] if args.variants == "all" else args.variants.split(",")
    variants = [v for v in VARIANTS if v.key in keys]
    if len(variants) != len(keys):
        parser.error(f"unknown variant in {args.variants!r}")
    if any(v.autogroup_nice is not None for v in variants) and not _autogroups_on():
        print("note: the kernel's autogroups are off here, so the own-session rows show no autogroup effect")

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        redis = launch_redis(work / "redis")
        s3 = launch_seaweedfs(work / "s3")
        processes: list[subprocess.Popen[bytes]] = []
        try:
            s3.bucket = "bench"
            settings = settings_for(s3, redis_url=redis.url, key_prefix="bench", queue_name="bench")
            Storage(settings).ensure_bucket()
            secret_key = secrets.token_hex(32)  # shared by every API process this run starts, as in a deployment
            env = env_for(settings, secret_key) | {"QUEUE_NAME": "bench", "KEY_PREFIX": "bench", "WORK_DIR": str(work)}
            key = admin_key(settings)
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
            wait_healthy(api)
            print(f"stack up: API {api}, Redis {redis.url}, S3 {s3.endpoint_url}; cores: {os.cpu_count()}")
            print(f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
            if not args.busy_only:
                job_id = bench_mock_job(api, work, bearer(key))
                bench_polling(api, job_id, args.pollers, key)
                if not args.skip_upload:
                    bench_upload(api, processes[0].pid, settings, args.upload_mb, bearer(key))
            if not args.skip_busy:
                # Its own API and worker, so the rows start alike; the first two stop.
                for process in processes:
                    process.terminate()
                    process.wait(timeout=30)
                processes.clear()
                clip = make_clip(work / "busy720.mp4", seconds=10, fps=30, size=(1280, 720), audio=True)
                stack = Stack(env, work, {"redis": redis.server.process.pid, "s3": s3.server.process.pid}, key)
                try:
                    bench_busy_polling(
                        stack,
                        clip,
                        variants,
                        repeats=args.busy_repeats,
                        pollers=args.busy_pollers,
                        jobs=args.busy_jobs,
                        seconds=args.busy_seconds,
                    )
                except BaseException:
                    print(f"    section [4] stopped; its processes' log ends:\n{stack.log_tail()}")
                    raise
                finally:
                    stack.close()
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
