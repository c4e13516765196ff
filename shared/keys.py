"""The one place that names things in Redis and in object storage.

Nothing else builds a key by hand, so a layout change happens here only.
"""

from __future__ import annotations

from enum import Enum

#  uploads/{job_id}/source{ext}      the uploaded video, as the client sent it
#  results/{job_id}/{result name}    what the worker produced


class ResultName(str, Enum):
    """The files a succeeded job offers, by their public names."""

    # An analysis job's
    ANNOTATED_VIDEO = "annotated.mp4"
    POSES_JSON = "poses.json"
    POSES_CSV = "poses.csv"
    METRICS_JSON = "metrics.json"
    BEATS_JSON = "beats.json"
    # A comparison job's
    COMPARISON_JSON = "comparison.json"
    COMPARISON_VIDEO = "comparison.mp4"

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self]


_CONTENT_TYPES = {
    ResultName.ANNOTATED_VIDEO: "video/mp4",
    ResultName.POSES_JSON: "application/json",
    ResultName.POSES_CSV: "text/csv",
    ResultName.METRICS_JSON: "application/json",
    ResultName.BEATS_JSON: "application/json",
    ResultName.COMPARISON_JSON: "application/json",
    ResultName.COMPARISON_VIDEO: "video/mp4",
}

RESULT_NAMES: tuple[str, ...] = tuple(name.value for name in ResultName)


def upload_key(job_id: str, extension: str) -> str:
    return f"uploads/{job_id}/source{extension}"


def results_prefix(job_id: str) -> str:
    return f"results/{job_id}/"


def result_key(job_id: str, name: ResultName | str) -> str:
    return f"{results_prefix(job_id)}{ResultName(name).value}"


def job_prefixes(job_id: str) -> tuple[str, ...]:
    """Every storage prefix that holds objects of one job (for deletion)."""
    return (f"uploads/{job_id}/", results_prefix(job_id))


class RedisKeys:
    """Redis key names, all under one configurable prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def job(self, job_id: str) -> str:
        """Hash: the job record."""
        return f"{self.prefix}:job:{job_id}"

    def job_index(self) -> str:
        """Sorted set: every job id, scored by creation time."""
        return f"{self.prefix}:jobs"

    def jobs_in(self, status: str) -> str:
        """Sorted set: the ids of the jobs in one status, scored by creation time."""
        return f"{self.prefix}:jobs:{status}"

    def owner_prefix(self) -> str:
        """Start of every per-owner key below (the job store's Lua script appends to it)."""
        return f"{self.prefix}:owner:"

    def owner_jobs(self, owner: str) -> str:
        """Sorted set: the ids of the jobs one API key created, scored by creation time."""
        return f"{self.owner_prefix()}{owner}:jobs"

    def owner_jobs_in(self, owner: str, status: str) -> str:
        """Sorted set: one key's jobs in one status (the Lua script in shared/jobs.py builds the same name)."""
        return f"{self.owner_jobs(owner)}:{status}"

    def owner_uploads(self, owner: str) -> str:
        """Sorted set: one key's uploads being received, scored by when their claim lapses (backend/limits.py)."""
        return f"{self.owner_prefix()}{owner}:uploads"

    def api_keys(self) -> str:
        """Hash: API key id → its record, with the key's digest, never the key (shared/apikeys.py)."""
        return f"{self.prefix}:api-keys"

    def status_index_marker(self) -> str:
        """String: present once the per-status sets were built for older records."""
        return f"{self.prefix}:jobs-indexed"

    def job_events(self, job_id: str) -> str:
        """Pub/sub channel: a message each time the job record visibly changes, or is deleted."""
        return f"{self.prefix}:job-events:{job_id}"

    def every_job_events(self) -> str:
        """PSUBSCRIBE pattern matching `job_events` of every job (the prefix's own glob characters escaped)."""
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self.prefix)
        return f"{escaped}:job-events:*"

    def job_id_of_events(self, channel: str) -> str:
        """The job id in a `job_events` channel name."""
        return channel.rsplit(":", 1)[1]

    def worker(self, name: str) -> str:
        """String with a short TTL: a live worker's presence and the job it runs (worker/presence.py)."""
        return f"{self.prefix}:worker:{name}"

    def workers(self) -> str:
        """Sorted set: worker names, scored by their presence's last refresh (shared/presence.py)."""
        return f"{self.prefix}:workers"

    def metrics(self) -> str:
        """Hash: what workers and the API observed, for `GET /metrics` (shared/metrics.py)."""
        return f"{self.prefix}:metrics"

    def open_uploads(self) -> str:
        """Sorted set: S3 multipart uploads in progress, scored by their last activity (shared/storage.py)."""
        return f"{self.prefix}:open-uploads"

    def reconciler_lock(self) -> str:
        """String with a TTL: held by whichever process runs the reconciler's sweep."""
        return f"{self.prefix}:reconciler-lock"
