"""Benchmark the API path: upload streaming, mock end-to-end time, status polls at scale.

    .venv/bin/python bench/bench_api.py [--upload-mb 1024] [--pollers 200,1000]

Starts its own real Redis and SeaweedFS (as the tests do), the API as users run
it (`python -m backend`) and a mock-mode worker, each as its own process, then
prints the figures below, each next to its goal. The API runs with API keys
required, one SECRET_KEY shared by every API process started here, and an
admin key made in the bench's Redis and sent on every request (the raw
pollers' too).

1. a large upload through POST /analyze: throughput and the API process's
   peak RSS, against a direct boto3 multipart upload of the same bytes to the
   same S3 server in this script (the baseline: what storage alone allows);
2. upload -> `succeeded` for a 10 s 720p 30 fps clip in mock mode, against a
   plain decode + H.264 encode of the same clip here (the render floor);
3. status polls: N pollers (200 and 1,000), each following its own job (half
   queued, half succeeded with five result links) with one GET /jobs/{id} per
   0.5 s, plain and with If-None-Match, on 1 API process and on one per core:
   p50/p99, API CPU per request (every API process), and GET / under the same
   load as the baseline (the server's own cost). Then pollers are added step by
   step until p99 passes 20 ms: the request rate the API sustains at that p99;
4. polling while the worker is busy: the same pollers, the first ones on 20
   queued mock jobs, first with no worker (idle), then with a mock worker
   chewing through them at niceness 10 (what worker/__main__.py applies).
   Other rows start the worker at nice 0 or in its own session, as
   `manage.sh local` does, where the kernel's autogroups make niceness alone
   useless (see `Variant`).

    .venv/bin/python bench/bench_api.py --skip-upload --skip-mock --skip-busy   # section [3] only

Figures, not assertions: the machines are shared and noisy. Each section
repeats (3 times by default) and prints every repeat's p99 and the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
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
from shared.jobs import JobRecord, JobStage, JobStatus, JobStore, new_job_id  # noqa: E402
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


def bench_mock_job(api: str, work: Path, headers: dict[str, str], repeats: int) -> None:
    clip = make_clip(work / "clip720.mp4", seconds=10, fps=30, size=(1280, 720), audio=True)

    import av  # the render floor: decode and re-encode the same clip here

    floors, totals, uploads = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        with av.open(str(clip)) as source, av.open(str(work / "floor.mp4"), "w") as out:
            stream = out.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
            stream.options = {"preset": "veryfast"}
            for frame in source.decode(video=0):
                image = frame.to_ndarray(format="bgr24")
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
            out.mux(stream.encode(None))
        floors.append(time.perf_counter() - start)

        start = time.perf_counter()
        with clip.open("rb") as handle:
            response = httpx.post(
                f"{api}/analyze", files={"file": ("clip720.mp4", handle, "video/mp4")}, headers=headers, timeout=60
            )
        job = response.raise_for_status().json()
        uploads.append(time.perf_counter() - start)
        status: dict[str, Any] = {}
        while time.perf_counter() - start < 120:
            status = httpx.get(f"{api}/jobs/{job['job_id']}", headers=headers).raise_for_status().json()
            if status["status"] in ("succeeded", "failed", "canceled"):
                break
            time.sleep(0.05)
        totals.append(time.perf_counter() - start)
        if status.get("status") != "succeeded":
            print(f"    the mock job ended {status.get('status')}: {status.get('error')}")

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):6.2f} s  (" + " / ".join(f"{v:.2f}" for v in values) + ")"

    print(f"\n[2] 10 s 720p30 clip, mock mode, upload -> succeeded; median (each of {repeats} runs)")
    print(f"    upload              {spread(uploads)}")
    print(f"    upload -> final     {spread(totals)}   goal < 5 s")
    print(
        f"    decode+encode floor {spread(floors)}   ratio {statistics.median(totals) / statistics.median(floors):.2f}x"
    )


@dataclass
class Poll:
    """What one raw poll got back."""

    status: bytes
    etag: bytes | None


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> Poll:
    """One keep-alive GET on a raw connection: a load generator far cheaper than an HTTP library,
    so the figures measure the server, not the client sharing its two cores."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12]
    length, etag = 0, None
    for line in head.split(b"\r\n"):
        name = line[:15].lower()
        if name.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
        elif name.startswith(b"etag:"):
            etag = line.split(b":", 1)[1].strip()
    await reader.readexactly(length)
    return Poll(status, etag)


@dataclass
class PollRun:
    latencies: list[float]
    not_modified: int  # answers that were 304
    seconds: float
    errors: dict[str, int]  # other answers, by status (an overloaded API answers 503 after 5 s)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


async def _pollers(
    url: str | list[str], count: int, seconds: float, interval: float, key: str, conditional: bool = False
) -> PollRun:
    """`count` keep-alive pollers, each one GET per `interval`; poller i polls urls[i % len(urls)]
    (all on one server). `conditional`: each sends the ETag it last got as If-None-Match, as a
    client following the README does. Every request carries the API key, as a client's would."""
    urls = [url] if isinstance(url, str) else url
    parsed = [httpx.URL(u) for u in urls]
    requests = [
        f"GET {u.raw_path.decode()} HTTP/1.1\r\nHost: {u.host}\r\nAuthorization: Bearer {key}\r\n".encode()
        for u in parsed
    ]
    latencies: list[float] = []
    not_modified = 0
    errors: dict[str, int] = {}

    async def poll(index: int, offset: float) -> None:
        nonlocal not_modified
        request = requests[index % len(requests)]
        reader, writer = await asyncio.open_connection(parsed[0].host, parsed[0].port)
        await asyncio.sleep(offset)
        etag: bytes | None = None
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            condition = b"If-None-Match: " + etag + b"\r\n" if conditional and etag else b""
            began = time.perf_counter()
            answer = await _get(reader, writer, request + condition + b"\r\n")
            latencies.append(time.perf_counter() - began)
            not_modified += answer.status == b"304"
            if answer.status not in (b"200", b"304"):
                errors[answer.status.decode()] = errors.get(answer.status.decode(), 0) + 1
            etag = answer.etag or etag
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))
        writer.close()

    await asyncio.gather(*(poll(i, i * interval / count) for i in range(count)))
    # Each poller polls for `seconds` from its own start: the offered rate is count / interval.
    return PollRun(latencies, not_modified, seconds, errors)


def run_pollers(*args: Any, **kwargs: Any) -> PollRun:
    """`_pollers` on uvloop when it is there: the load generator shares the machine's cores."""
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_pollers(*args, **kwargs))
    except ImportError:
        return asyncio.run(_pollers(*args, **kwargs))


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.99)] * 1000


# --- [3] status polls: latency, CPU per poll, the rate at p99 = 20 ms, 1 process against N ------

P99_GOAL_MS = 20.0
CPU_GOAL_MS = 1.0


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (the API's launcher and its uvicorn workers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        queue.extend(int(child) for child in children)
    return found


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone
            total += cpu_seconds(pid)
    return total


class Api:
    """`python -m backend --processes N`, as manage.sh and the backend image run it."""

    def __init__(self, env: dict[str, str], log: Any, processes: int) -> None:
        self.processes = processes
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "backend", "--port", str(port), "--processes", str(processes)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        wait_healthy(self.url)
        deadline = time.monotonic() + 30
        while len(process_tree(self.process.pid)) < 1 + (processes if processes > 1 else 0):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start {processes} processes")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        return process_tree(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def seed_jobs(settings: Settings, owner: str, count: int) -> list[str]:
    """`count` job records as clients have them: half queued, half succeeded with their five result
    links (the costlier view). Written straight to the store: uploading 1,000 videos would measure
    uploads."""
    store = JobStore(Redis.from_url(settings.redis_url), RedisKeys(settings.key_prefix))
    results = ["annotated.mp4", "poses.json", "poses.csv", "metrics.json", "beats.json"]
    ids = []
    for i in range(count):
        done = i % 2 == 1
        record = JobRecord(
            job_id=new_job_id(), owner=owner, filename=f"dance-{i}.mp4", size_bytes=12_345_678, mode="mock",
            status=JobStatus.SUCCEEDED if done else JobStatus.QUEUED, stage=JobStage.DONE if done else JobStage.QUEUED,
            progress=1.0 if done else 0.0, frames_done=300 if done else 0, frames_total=300,
            started_at=time.time() if done else None, finished_at=time.time() if done else None,
            results=results if done else [], video={"width": 1280, "height": 720, "fps": 30.0, "duration": 10.0},
        )  # fmt: skip
        store.create(record)
        ids.append(record.job_id)
    return ids


@dataclass
class PollRow:
    runs: list[PollRun]
    cpu_ms: list[float]  # API CPU (every process) per request, per run


def _measure_polls(
    api: Api, urls: list[str], key: str, pollers: int, seconds: float, conditional: bool
) -> tuple[PollRun, float]:
    pids = api.pids()
    before = tree_cpu_seconds(pids)
    run = run_pollers(urls, pollers, seconds, 0.5, key, conditional)
    return run, (tree_cpu_seconds(pids) - before) / max(len(run.latencies), 1) * 1000


def knee(api: Api, urls: list[str], key: str, conditional: bool, seconds: float) -> str:
    """The request rate at which p99 reaches the goal: pollers added step by step (each polls
    every 0.5 s) until p99 passes 20 ms or the API falls behind, then interpolated."""
    last_ok: tuple[float, float] | None = None
    for pollers in (200, 400, 700, 1000, 1400, 2000, 2800, 4000):
        run, _ = _measure_polls(api, urls, key, pollers, seconds, conditional)
        p99 = _percentiles(run.latencies)[1]
        behind = run.rate < 0.9 * pollers / 0.5 or bool(run.errors)
        if p99 > P99_GOAL_MS or behind:
            if last_ok is None:
                return f"p99 {p99:.1f} ms already at {run.rate:.0f} req/s"
            rate0, p0 = last_ok
            at = rate0 + (run.rate - rate0) * (P99_GOAL_MS - p0) / max(p99 - p0, 1e-9) if not behind else rate0
            return f"~{at:.0f} req/s (p99 {p0:.1f} ms at {rate0:.0f}, {p99:.1f} ms at {run.rate:.0f})"
        last_ok = (run.rate, p99)
    assert last_ok is not None
    return f"> {last_ok[0]:.0f} req/s (p99 {last_ok[1]:.1f} ms at the last step)"


def bench_status_polls(
    env: dict[str, str], work: Path, settings: Settings, key: str, *, pollers: list[int], processes: list[int],
    repeats: int, seconds: float, knee_seconds: float,
) -> None:  # fmt: skip
    """Section [3]: each poller follows its own job, as clients do."""
    from shared.apikeys import key_id_of

    jobs = seed_jobs(settings, key_id_of(key) or "", max(pollers))
    log = (work / "polls.log").open("wb")
    rows: dict[str, PollRow] = {}
    knees: dict[str, list[str]] = {}
    try:
        for repeat in range(repeats):
            for count in processes:
                api = Api(env, log, count)
                try:
                    urls = [f"{api.url}/jobs/{job_id}" for job_id in jobs]
                    for n in pollers:
                        for kind in ("plain", "If-None-Match", "GET / (baseline)"):
                            label = f"{n} pollers, {count} process{'es' if count > 1 else ''}, {kind}"
                            targets = [f"{api.url}/"] if kind.startswith("GET /") else urls[:n]
                            run, cpu = _measure_polls(api, targets, key, n, seconds, kind == "If-None-Match")
                            row = rows.setdefault(label, PollRow([], []))
                            row.runs.append(run)
                            row.cpu_ms.append(cpu)
                            p50, p99 = _percentiles(run.latencies)
                            print(f"    repeat {repeat + 1}, {label}: p50 {p50:.1f} p99 {p99:.1f} ms, "
                                  f"{run.rate:.0f} req/s, API CPU {cpu:.3f} ms/req, {run.not_modified} x 304"
                                  f"{f', errors {run.errors}' if run.errors else ''}",
                                  flush=True)  # fmt: skip
                    if knee_seconds > 0:
                        for conditional in (False, True):
                            kind = "If-None-Match" if conditional else "plain"
                            label = f"{count} process{'es' if count > 1 else ''}, {kind}"
                            found = knee(api, urls, key, conditional, knee_seconds)
                            knees.setdefault(label, []).append(found)
                            print(f"    repeat {repeat + 1}, p99 = {P99_GOAL_MS:.0f} ms, {label}: {found}", flush=True)
                finally:
                    api.stop()
    finally:
        log.close()
    print("\n[3] status polls: each poller follows its own job (half queued, half succeeded with five result")
    print(
        f"    links), one GET /jobs/{{id}} per 0.5 s for {seconds:.0f} s; API as `python -m backend`; {repeats} repeats"
    )
    print("    ms: p50 over all repeats; p99 of each repeat and its spread; cpu: API CPU ms per request (all its")
    print(
        "    processes), mean and spread. GET / (no Redis, no job) is the baseline: the server's own cost per request"
    )
    width = max(len(" / ".join(f"{_percentiles(r.latencies)[1]:.1f}" for r in row.runs)) for row in rows.values())
    print(
        f"    {'':44} {'p50':>6} {'p99 each repeat':>{width}} {'p99 spread':>12} {'cpu':>6} {'cpu spread':>12} "
        f"{'req/s':>7} {'errors':>7}"
    )
    for label, row in rows.items():
        p99s = [_percentiles(run.latencies)[1] for run in row.runs]
        every = [v for run in row.runs for v in run.latencies]
        print(
            f"    {label:44} {_percentiles(every)[0]:6.1f} {' / '.join(f'{v:.1f}' for v in p99s):>{width}} "
            f"{f'{min(p99s):.1f}-{max(p99s):.1f}':>12} {statistics.mean(row.cpu_ms):6.3f} "
            f"{f'{min(row.cpu_ms):.3f}-{max(row.cpu_ms):.3f}':>12} {statistics.mean(r.rate for r in row.runs):7.0f} "
            f"{sum(sum(r.errors.values()) for r in row.runs):7d}"
        )
    print(
        f"    goals: p99 < {P99_GOAL_MS:.0f} ms at 200 pollers; "
        f"API CPU <= {CPU_GOAL_MS:.0f} ms per poll of an unchanged job"
    )
    if knees:
        print(
            f"\n    request rate at which p99 reaches {P99_GOAL_MS:.0f} ms (pollers added until it does), each repeat:"
        )
        for label, each in knees.items():
            print(f"    {label:30} " + "; ".join(each))


# --- [4] polling while the worker is busy ------------------------------------


def _autogroups_on() -> bool:
    path = Path("/proc/sys/kernel/sched_autogroup_enabled")
    return path.exists() and path.read_text().strip() == "1"


@dataclass(frozen=True)
class Variant:
    """How the worker runs for one row of section [4].

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


VARIANTS = [
    Variant("nice0", "worker nice 0", 0),
    Variant("nice10", "worker nice 10 (what the code does)", 10),
    Variant("session", "worker nice 10, own session (manage.sh)", 10, own_session=True),
    Variant("autogroup", "worker nice 10, own session + autogroup nice 10", 10, own_session=True, autogroup_nice=10),
]
DEFAULT_VARIANTS = "nice10"


class Stack:
    """The API (`python -m backend`, one process per core) and the worker of section [4]."""

    def __init__(self, env: dict[str, str], work: Path, service_pids: dict[str, int], key: str) -> None:
        self.env = env  # API_AUTH=keys and the SECRET_KEY every API process of the bench shares
        self.key = key
        self.headers = bearer(key)
        self.service_pids = service_pids  # Redis and S3, whose CPU counts as ours
        self.work = work
        self.log = (work / "busy.log").open("wb")
        self.api = Api(env, self.log, 0)
        self.worker: subprocess.Popen[bytes] | None = None

    def start_worker(self, variant: Variant) -> subprocess.Popen[bytes]:
        # `nice -n` before exec: every thread the worker ever makes inherits it, as
        # when worker/__main__.py calls setpriority before anything starts a thread.
        # WORKER_NICE keeps that call from undoing the variant.
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

    def close(self) -> None:
        self.stop_worker()
        self.api.stop()
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
    api_cpu_ms: float  # API CPU (all its processes) per request
    worker_cores: float | None  # CPU the worker used, in cores
    others_cores: float  # CPU used by processes not of this benchmark (the shared machine's noise)
    jobs_left: int | None


def measure(stack: Stack, urls: list[str], ids: list[str], pollers: int, seconds: float) -> BusyRun:
    api_pids = stack.api.pids()
    ours = {"self": os.getpid(), **stack.service_pids}
    if stack.worker:
        ours["worker"] = stack.worker.pid
    before = {name: cpu_seconds(pid) for name, pid in ours.items()}
    api_before = tree_cpu_seconds(api_pids)
    machine_before, began = machine_busy_seconds(), time.perf_counter()
    latencies = run_pollers(urls, pollers, seconds, 0.5, stack.key).latencies
    elapsed = time.perf_counter() - began
    used = {name: cpu_seconds(pid) - before[name] for name, pid in ours.items()}
    used["api"] = tree_cpu_seconds(api_pids) - api_before
    others = (machine_busy_seconds() - machine_before - sum(used.values())) / elapsed
    left = None
    if stack.worker:
        left = sum(s["status"] in ("queued", "running") for s in statuses(stack.api.url, ids, stack.headers))
    worker = used["worker"] / elapsed if "worker" in used else None
    return BusyRun(latencies, used["api"] / len(latencies) * 1000, worker, max(others, 0.0), left)


def _report(repeat: int, label: str, run: BusyRun) -> BusyRun:
    """One line per measurement as it ends, so a run cut short still shows what it measured."""
    p50, p99 = _percentiles(run.latencies)
    worker = f"worker {run.worker_cores:.2f} cores, " if run.worker_cores is not None else ""
    print(
        f"    repeat {repeat + 1}, {label}: p50 {p50:.1f} p99 {p99:.1f} max {max(run.latencies) * 1000:.1f} ms; "
        f"API {run.api_cpu_ms:.3f} ms/req; {worker}others {run.others_cores:.2f} cores",
        flush=True,
    )
    return run


def bench_busy_polling(
    stack: Stack, clip: Path, variants: list[Variant], seeded: list[str], *, repeats: int, pollers: list[int],
    jobs: int, seconds: float,
) -> None:  # fmt: skip
    """Section [4]: every repeat measures every row once, rows interleaved so noise spreads evenly.
    Each poller follows its own job: the `jobs` real mock jobs the worker runs, then seeded ones."""
    rows: dict[str, list[BusyRun]] = {}
    api = stack.api.url
    for repeat in range(repeats):
        for variant in variants:
            ids = submit_jobs(api, clip, jobs, stack.headers)  # queued; nothing runs them until the worker starts
            urls = [f"{api}/jobs/{job_id}" for job_id in [*ids, *seeded]]
            for n in pollers:
                label = f"{n} pollers, idle (no worker)"
                if variants.index(variant) == 0:
                    rows.setdefault(label, []).append(_report(repeat, label, measure(stack, urls[:n], ids, n, seconds)))
            stack.start_worker(variant)
            try:
                wait_until_busy(api, ids, stack.headers)
                for n in pollers:
                    label = f"{n} pollers, busy, {variant.label}"
                    rows.setdefault(label, []).append(_report(repeat, label, measure(stack, urls[:n], ids, n, seconds)))
            finally:
                cancel_all(api, ids, stack.headers)
                stack.stop_worker()

    print(
        f"\n[4] polling while the worker is busy: one GET /jobs/{{id}} per poller per 0.5 s for {seconds:.0f} s, "
        f"each poller its own job ({jobs} mock jobs of a 10 s 720p30 clip, then seeded ones); "
        f"API: {stack.api.processes or 'one per core'} process(es); {repeats} repeats"
    )
    print("    ms: p50 and max over all repeats; p99 of each repeat, and its spread (min-max) across repeats")
    print("    api: API CPU ms per request; worker, others: cores used by the worker, and by processes not of")
    print("    this benchmark (the shared machine's noise); left: fewest jobs not yet final when a window ended")
    width = max(
        len("p99 each repeat"),
        *(len(" / ".join(f"{_percentiles(r.latencies)[1]:.1f}" for r in runs)) for runs in rows.values()),
    )
    print(f"    {'':56} {'p50':>6} {'p99 each repeat':>{width}} {'p99 spread':>14} {'max':>8} {'api':>6} {'worker':>7} "
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
            f"{statistics.mean(r.api_cpu_ms for r in runs):6.3f} {worker:>7} "
            f"{statistics.mean(r.others_cores for r in runs):7.2f} {left:>5}"
        )
    print(f"    goal: p99 < {P99_GOAL_MS:.0f} ms at 200 pollers")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upload-mb", type=int, default=1024)
    parser.add_argument("--skip-upload", action="store_true", help="skip the large upload (the slowest part)")
    parser.add_argument("--skip-mock", action="store_true", help="skip section [2], the mock job end to end")
    parser.add_argument("--mock-repeats", type=int, default=3, help="mock jobs timed in section [2]")
    parser.add_argument("--skip-polls", action="store_true", help="skip section [3]")
    parser.add_argument("--pollers", default="200,1000", help="section [3] and [4]: poller counts, comma-separated")
    parser.add_argument("--processes", default="", help="section [3]: API process counts (default: 1 and one per core)")
    parser.add_argument("--poll-seconds", type=float, default=10)
    parser.add_argument("--poll-repeats", type=int, default=3)
    parser.add_argument("--knee-seconds", type=float, default=5, help="per step of the p99 = 20 ms search; 0 skips it")
    parser.add_argument("--skip-busy", action="store_true", help="skip section [4]")
    parser.add_argument("--busy-only", action="store_true", help="run only section [4], polling while busy")
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
    pollers = [int(n) for n in args.pollers.split(",")]
    from backend.__main__ import available_cores

    cores = available_cores()
    processes = [int(n) for n in args.processes.split(",")] if args.processes else sorted({1, cores})
    # A thousand pollers are a thousand sockets, in this process and in the API's.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        redis = launch_redis(work / "redis")
        s3 = launch_seaweedfs(work / "s3")
        processes_started: list[subprocess.Popen[bytes]] = []
        try:
            s3.bucket = "bench"
            settings = settings_for(s3, redis_url=redis.url, key_prefix="bench", queue_name="bench")
            Storage(settings).ensure_bucket()
            secret_key = secrets.token_hex(32)  # shared by every API process this run starts, as in a deployment
            env = env_for(settings, secret_key) | {"QUEUE_NAME": "bench", "KEY_PREFIX": "bench", "WORK_DIR": str(work)}
            key = admin_key(settings)
            print(f"Redis {redis.url}, S3 {s3.endpoint_url}; cores: {cores}")
            print(f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
            if not args.busy_only and not (args.skip_mock and args.skip_upload):
                log = (work / "api.log").open("wb")
                api = Api(env, log, 1)  # one process: the upload's peak RSS is one process's
                processes_started.append(api.process)
                processes_started.append(
                    subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=log, stderr=log)
                )
                if not args.skip_mock:
                    bench_mock_job(api.url, work, bearer(key), args.mock_repeats)
                if not args.skip_upload:
                    bench_upload(api.url, api.process.pid, settings, args.upload_mb, bearer(key))
                for process in processes_started:
                    process.terminate()
                    process.wait(timeout=30)
                processes_started.clear()
            seeded: list[str] = []
            if not args.busy_only and not args.skip_polls:
                bench_status_polls(
                    env, work, settings, key, pollers=pollers, processes=processes, repeats=args.poll_repeats,
                    seconds=args.poll_seconds, knee_seconds=args.knee_seconds,
                )  # fmt: skip
            if not args.skip_busy:
                from shared.apikeys import key_id_of

                seeded = seed_jobs(settings, key_id_of(key) or "", max(pollers))
                clip = make_clip(work / "busy720.mp4", seconds=10, fps=30, size=(1280, 720), audio=True)
                stack = Stack(env, work, {"redis": redis.server.process.pid, "s3": s3.server.process.pid}, key)
                try:
                    bench_busy_polling(
                        stack, clip, variants, seeded, repeats=args.busy_repeats, pollers=pollers,
                        jobs=args.busy_jobs, seconds=args.busy_seconds,
                    )  # fmt: skip
                except BaseException:
                    print(f"    section [4] stopped; its processes' log ends:\n{stack.log_tail()}")
                    raise
                finally:
                    stack.close()
        finally:
            for process in processes_started:
                process.terminate()
            for process in processes_started:
                process.wait(timeout=30)
            threading.Thread(target=s3.stop).start()
            redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
