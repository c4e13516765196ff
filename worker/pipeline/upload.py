"""Upload stage: the finished result set, into object storage.

Results are uploaded before the job says `succeeded`, which is the commit:
the API offers results only for a succeeded job. `discard` removes a partial
set, unfinished multipart uploads included, so a failed or canceled job never
leaves one behind; the reconciler does the same for a run that was killed.
A second run overwrites the same keys.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from shared.errors import ServiceError
from shared.keys import ResultName, result_key, results_prefix
from shared.storage import Storage


def upload_results(storage: Storage, job_id: str, files: dict[ResultName, Path]) -> list[str]:
    # The video is the largest and the one most likely to fail: send it first.
    order = sorted(files, key=lambda name: not name.content_type.startswith("video/"))
    for name in order:
        storage.upload_file(files[name], result_key(job_id, name), name.content_type)
    return [name.value for name in order]


def discard_results(storage: Storage, job_id: str) -> None:
    # Best effort: a storage outage must not hide the job's real error.
    with contextlib.suppress(ServiceError):
        storage.purge_prefix(results_prefix(job_id))
