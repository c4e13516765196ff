"""What survives when things fail: jobs submitted, jobs ended, and what was left behind.

    .venv/bin/python bench/bench_faults.py [--jobs 20] [--repeat 3]

Starts a persistent Redis, SeaweedFS, the API (uvicorn) and a supervised mock
worker, each its own process, with storage behind a TCP proxy that can be cut.
Each round submits the jobs twice: once undisturbed (the baseline), once
while this script breaks things the way production does:

- SIGKILL of the worker three times, at random moments of its jobs;
- `kill -9` of Redis, started again a second later on the same files;
- storage unreachable for 3 s (the proxy resets every connection).

It prints, for both passes: jobs submitted, succeeded, failed (by code),
not finished; the attempts they took; how long the queue took to drain; the
API's 5xx answers to a poller; and what was left behind: result objects of
jobs that did not succeed, succeeded jobs with a result set other than 4
files, unfinished multipart uploads, scratch folders, and records on which
RQ and the API disagree. Figures, not assertions.

The API runs as a user runs it: API keys required, one SECRET_KEY shared by
every API process of the run, and an admin key made in each stack's Redis and
sent on every request.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.apikeys import ApiKeyStore  # noqa: E402
from shared.keys import RedisKeys, results_prefix  # noqa: E402
from shared.queue import get_queue, rq_status  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.storage import Storage  # noqa: E402
from tests.conftest import settings_for  # noqa: E402
from tests.processes import env_for, wait_for  # noqa: E402
from tests.proxy import TcpProxy  # noqa: E402
from tests.services import RedisServer, free_port, launch_redis, launch_seaweedfs  # noqa: E402
from tests.synthetic import make_clip  # noqa: E402

FINAL = {"succeeded", "failed", "canceled"}
# MAX_QUEUED_JOBS_PER_KEY for the bench: each pass queues all --jobs jobs on one key at once, and
# the default cap (20) would answer 429 RATE_LIMITED to any beyond it.
MAX_QUEUED_JOBS = 10_000
RQ_FOR = {"succeeded": {"finished"}, "failed": {"failed"}, "canceled": {"canceled"}}


@dataclass
class Outcome:
    label: str
    submitted: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    attempts: collections.Counter[int] = field(default_factory=collections.Counter)
    drain_seconds: float = 0.0
    poll_5xx: int = 0
    polls: int = 0
    poll_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    leftovers: dict[str, int] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"  {self.label}: {self.submitted} submitted; "
            + ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())),
            "    attempts: " + ", ".join(f"{n} job(s) x{a}" for a, n in sorted(self.attempts.items())),
            f"    drained in {self.drain_seconds:.1f} s; poller saw {self.poll_5xx} 5xx in {self.polls} polls"
            + (f" ({', '.join(f'{n} {c}' for c, n in self.poll_errors.items())})" if self.poll_errors else ""),
            "    left behind: " + ", ".join(f"{k} {v}" for k, v in self.leftovers.items()),
            *([f"    faults: {'; '.join(self.faults)}"] if self.faults else []),
        ]


class Stack:
    """Redis (AOF), SeaweedFS behind a proxy, the API and a supervised mock worker."""

    def __init__(self, root: Path, s3_url: str, base: Settings) -> None:
        self.root = root
        self.redis_dir = root / "redis"
        self.redis_dir.mkdir(parents=True)
        self.redis: RedisServer = launch_redis(self.redis_dir, persistent=True)
        self.proxy = TcpProxy(int(s3_url.rsplit(":", 1)[1]))
        self.settings = base.model_copy(
            update={
                "redis_url": self.redis.url,
                "s3_endpoint_url": self.proxy.url,
                "s3_public_endpoint_url": "",
                "key_prefix": "bench",
                "work_dir": str(root / "work"),
                "abandoned_upload_seconds": 5,
            }
        )
        (root / "work").mkdir()
        # In Redis before the API starts, and kept across its kill -9 (append-only file).
        self.headers = {"Authorization": f"Bearer {self.make_admin_key()}"}
        env = env_for(self.settings)
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.logs = [(root / "api.log").open("ab"), (root / "worker.log").open("ab")]
        self.api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory", "--port", str(self.api_port)],
            cwd=ROOT, env=env, stdout=self.logs[0], stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "worker.supervisor"],
            cwd=ROOT, env=env, stdout=self.logs[1], stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_for(self._api_up, 60, "the API")
        wait_for(lambda: self.worker_pid() is not None, 60, "the worker")

    def _api_up(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200  # open: no key
        return False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)

    def make_admin_key(self) -> str:
        client = self.client()
        try:
            return ApiKeyStore(client, RedisKeys(self.settings.key_prefix)).create("bench-faults", admin=True)[1]
        finally:
            client.close()

    def worker_pid(self) -> int | None:
        with contextlib.suppress(redis.RedisError):
            client = self.client()
            for key in client.smembers("rq:workers:analysis"):
                pid = client.hget(key.decode(), "pid")
                if pid and os.path.exists(f"/proc/{int(pid)}") and os.getpgid(int(pid)) == self.worker.pid:
                    return int(pid)
        return None

    def kill_redis(self) -> None:
        self.redis.server.process.send_signal(signal.SIGKILL)
        self.redis.server.process.wait(10)
        time.sleep(1.0)
        self.redis = launch_redis(self.redis_dir, persistent=True, port=self.redis.port)

    def close(self) -> None:
        for process in (self.worker, self.api):
            process.send_signal(signal.SIGTERM)
        for process in (self.worker, self.api):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.redis.stop()
        self.proxy.close()
        for log in self.logs:
            log.close()


def submit(api: str, clip: Path, count: int, headers: dict[str, str]) -> list[str]:
    ids = []
    for _ in range(count):
        with clip.open("rb") as handle:
            files = {"file": (clip.name, handle, "video/mp4")}
            response = httpx.post(f"{api}/analyze", files=files, headers=headers, timeout=60)
        response.raise_for_status()
        ids.append(response.json()["job_id"])
    return ids


def poll_all(
    api: str, ids: list[str], outcome: Outcome, stop: threading.Event, headers: dict[str, str]
) -> dict[str, dict]:
    """Poll every job until all are final (or `stop`); counts 5xx answers."""
    last: dict[str, dict] = {}
    with httpx.Client(timeout=10, headers=headers) as client:
        while not stop.is_set():
            for job_id in ids:
                if last.get(job_id, {}).get("status") in FINAL:
                    continue
                try:
                    response = client.get(f"{api}/jobs/{job_id}")
                except httpx.HTTPError as exc:
                    outcome.poll_5xx += 1
                    outcome.poll_errors[type(exc).__name__] += 1
                    continue
                outcome.polls += 1
                if response.status_code >= 500:
                    outcome.poll_5xx += 1
                    outcome.poll_errors[f"{response.status_code} {response.json()['error']['code']}"] += 1
                    continue
                last[job_id] = response.json()
            if all(last.get(j, {}).get("status") in FINAL for j in ids):
                break
            time.sleep(0.2)
    return last


def leftovers(stack: Stack, jobs: dict[str, dict]) -> dict[str, int]:
    storage = Storage(stack.settings.model_copy(update={"s3_endpoint_url": stack.proxy.url}))
    queue = get_queue(stack.settings, stack.client())
    stray_results = sum(
        len(storage.list_keys(results_prefix(job_id))) for job_id, job in jobs.items() if job["status"] != "succeeded"
    )
    incomplete_sets = sum(
        1 for job_id, job in jobs.items()
        if job["status"] == "succeeded"
        and sorted(key.rsplit("/", 1)[1] for key in storage.list_keys(results_prefix(job_id))) != sorted(job["results"])
    )  # fmt: skip
    open_uploads = sum(1 for key, _ in storage.open_multipart_uploads("") if key.split("/")[1] in jobs)
    scratch = len(list((stack.root / "work").glob("job-*")))
    disagree = sum(1 for job_id, job in jobs.items() if rq_status(queue, job_id) not in RQ_FOR.get(job["status"], ()))
    return {
        "result objects of unsucceeded jobs": stray_results,
        "succeeded jobs whose stored results differ from their list": incomplete_sets,
        "unfinished multipart uploads": open_uploads,
        "scratch folders": scratch,
        "RQ/API disagreements": disagree,
    }


def run_pass(stack: Stack, clip: Path, jobs: int, label: str, *, chaos: bool, seed: int) -> Outcome:
    outcome = Outcome(label, submitted=jobs)
    rng = random.Random(seed)
    started = time.monotonic()
    ids = submit(stack.api_url, clip, jobs, stack.headers)
    stop = threading.Event()
    chaos_thread = None
    if chaos:

        def break_things() -> None:
            plan = ["worker", "redis", "worker", "storage", "worker"]
            for fault in plan:
                if stop.wait(rng.uniform(2.0, 5.0)):
                    return
                if fault == "worker" and (pid := stack.worker_pid()):
                    os.kill(pid, signal.SIGKILL)
                    outcome.faults.append(f"t={time.monotonic() - started:.1f}s SIGKILL worker")
                elif fault == "redis":
                    stack.kill_redis()
                    outcome.faults.append(f"t={time.monotonic() - started:.1f}s kill -9 redis (1 s down)")
                elif fault == "storage":
                    stack.proxy.cut()
                    time.sleep(3.0)
                    stack.proxy.restore()
                    outcome.faults.append(f"t={time.monotonic() - started:.1f}s storage cut for 3 s")

        chaos_thread = threading.Thread(target=break_things, daemon=True)
        chaos_thread.start()
    final = poll_all(stack.api_url, ids, outcome, threading.Event(), stack.headers)
    outcome.drain_seconds = time.monotonic() - started
    stop.set()
    if chaos_thread:
        chaos_thread.join()
    for job in final.values():
        status = job["status"] if job["status"] != "failed" else f"failed {job['error']['code']}"
        outcome.statuses[status] += 1
        outcome.attempts[job["attempts"]] += 1
    outcome.statuses["not finished"] = jobs - sum(1 for j in final.values() if j["status"] in FINAL)
    time.sleep(6)  # one reconciler round after the abandoned-upload age (5 s here)
    outcome.leftovers = leftovers(stack, final)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        root = Path(tmp)
        # About 2.5 s of mock analysis and rendering each: the faults land mid-job.
        clip = make_clip(root / "clip.mp4", seconds=10, fps=30, size=(1280, 720))
        s3 = launch_seaweedfs(root / "s3")
        s3.bucket = "bench-faults"
        # API keys on, and one SECRET_KEY for every API process of the run, as a deployment's share one.
        base = settings_for(
            s3, api_auth="keys", secret_key=secrets.token_hex(32), max_queued_jobs_per_key=MAX_QUEUED_JOBS
        )
        Storage(base).ensure_bucket()
        drains: dict[str, list[float]] = collections.defaultdict(list)
        try:
            for round_number in range(1, args.repeat + 1):
                print(f"round {round_number}")
                for label, chaos in (("baseline (no faults)", False), ("with faults", True)):
                    stack = Stack(root / f"r{round_number}-{'chaos' if chaos else 'calm'}", s3.endpoint_url, base)
                    try:
                        outcome = run_pass(stack, clip, args.jobs, label, chaos=chaos, seed=round_number)
                    finally:
                        stack.close()
                    print("\n".join(outcome.lines()), flush=True)
                    drains[label].append(outcome.drain_seconds)
        finally:
            s3.stop()
    print("drain time over rounds (min-max):")
    for label, values in drains.items():
        print(f"  {label}: {min(values):.1f}-{max(values):.1f} s")
    calm, chaos = drains["baseline (no faults)"], drains["with faults"]
    ratios = [c / b for b, c in zip(calm, chaos, strict=True)]
    print(f"  drain time with faults / without: x{min(ratios):.2f}-x{max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
