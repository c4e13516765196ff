"""The service at a glance: `python -m shared.overview [--json] [--failures N]`.

Prints each RQ queue and its depth, the live workers (name, state, current job,
heartbeat age), the job records by status and the newest failed jobs (id,
time, error code and message), from Redis alone, with the same settings
(`REDIS_URL`, `KEY_PREFIX`, `QUEUE_NAME`...) as the services. `./manage.sh local
overview` runs it; in a container, `python -m shared.overview` does. Plain text
for a person, `--json` for scripts. It needs nothing beyond the API's own
requirements, so it runs in every image.

Exit codes: 0, or 1 when Redis cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from shared.jobs import JobRecord, JobStatus
from shared.keys import RedisKeys
from shared.metrics import QUEUE_STATES, read_snapshot
from shared.settings import Settings, get_settings

DEFAULT_FAILURES = 10


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def without_password(url: str) -> str:
    """The URL to show: never the credentials of a redis://user:password@host URL."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def recent_failures(client: redis.Redis, keys: RedisKeys, limit: int) -> list[dict[str, Any]]:
    """The `limit` newest failed jobs (by creation), the most recently failed first."""
    if limit <= 0:
        return []
    ids = [_text(job_id) for job_id in client.zrevrange(keys.jobs_in(JobStatus.FAILED.value), 0, limit - 1)]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(keys.job(job_id))
    failures = []
    for raw in pipe.execute():
        if not raw:
            continue  # removed since the index was read
        record = JobRecord.from_redis({_text(k): _text(v) for k, v in raw.items()})
        error = record.error or {}
        failures.append(
            {
                "job_id": record.job_id,
                "failed_at": _iso(record.finished_at),
                "created_at": _iso(record.created_at),
                "code": str(error.get("code", "")),
                "message": str(error.get("message", "")),
                "attempts": record.attempts,
                "filename": record.filename,
            }
        )
    failures.sort(key=lambda failure: failure["failed_at"] or "", reverse=True)
    return failures


def gather(settings: Settings, client: redis.Redis, failures: int = DEFAULT_FAILURES) -> dict[str, Any]:
    """Everything the overview shows, as plain data (what `--json` prints)."""
    keys = RedisKeys(settings.key_prefix)
    snapshot = read_snapshot(client, keys, settings.queue_name, with_stored=False)
    return {
        "time": _iso(datetime.now(UTC).timestamp()),
        "redis": without_password(settings.redis_url),
        "key_prefix": settings.key_prefix,
        "queues": [{"name": depth.name, **depth.counts} for depth in snapshot.queues],
        "workers": [
            {
                "name": worker.name,
                "state": "busy" if worker.job else "idle",
                "job": worker.job or None,
                "host": worker.host,
                "pid": worker.pid,
                "heartbeat_age_seconds": round(worker.seen_seconds_ago, 1),
            }
            for worker in sorted(snapshot.workers, key=lambda worker: worker.name)
        ],
        "jobs": snapshot.jobs,
        "failures": recent_failures(client, keys, failures),
    }


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "  ") -> list[str]:
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(header), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return indent + "  ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()

    return [line(headers), *(line(row) for row in cells)]


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render_text(view: dict[str, Any]) -> str:
    lines = [f"Dance analysis at {view['time']}  (Redis {view['redis']}, key prefix {view['key_prefix']})", ""]
    lines.append("Queues (RQ)")
    rows = [[queue["name"], *(queue[state] for state in QUEUE_STATES)] for queue in view["queues"]]
    lines += _table(["queue", *QUEUE_STATES], rows)

    workers = view["workers"]
    busy = sum(1 for worker in workers if worker["state"] == "busy")
    lines += ["", f"Workers: {len(workers)} live, {busy} busy"]
    if workers:
        rows = [
            [w["name"], w["state"], w["job"] or "-", f"{w['heartbeat_age_seconds']:.1f} s ago", w["host"], w["pid"]]
            for w in workers
        ]
        lines += _table(["name", "state", "job", "heartbeat", "host", "pid"], rows)
    else:
        lines.append("  none: no worker has shown a sign of life within its presence TTL")

    lines += ["", "Jobs by status"]
    lines += _table(list(view["jobs"]), [list(view["jobs"].values())])

    failures = view["failures"]
    lines += ["", f"Last failures ({len(failures)})"]
    if failures:
        rows = [[f["failed_at"] or "-", f["job_id"], f["code"] or "-", _shorten(f["message"], 70)] for f in failures]
        lines += _table(["failed at (UTC)", "job", "code", "message"], rows)
    else:
        lines.append("  none")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.overview", description="The queues, workers, job counts and last failures at a glance."
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    parser.add_argument(
        "--failures", type=int, default=DEFAULT_FAILURES, metavar="N", help="how many recent failures (default 10)"
    )
    args = parser.parse_args(argv)
    if args.failures < 0:
        parser.error("--failures must be 0 or more")
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=10)
    try:
        view = gather(settings, client, args.failures)
    except redis.RedisError as exc:
        print(f"error: Redis at {without_password(settings.redis_url)} is unavailable: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(view, indent=2) + "\n" if args.json else render_text(view))
    return 0


if __name__ == "__main__":
    sys.exit(main())
