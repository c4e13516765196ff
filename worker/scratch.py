"""Each job's scratch folder, and the removal of those left by killed workers.

A job works in `{work_dir}/job-{job_id}-{pid}-XXXX`; the folder goes when the
job ends. A SIGKILL leaves it behind, so a starting worker removes every job
folder whose process is no longer alive (the pid in its name says whose it is).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_JOB_DIR = re.compile(r"^job-[0-9a-zA-Z]+-(\d+)-")


def job_dir(work_dir: str, job_id: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=f"job-{job_id}-{os.getpid()}-", dir=work_dir or None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_orphans(work_dir: str) -> list[Path]:
    """Remove the job folders of processes that are gone; returns what was removed."""
    root = Path(work_dir or tempfile.gettempdir())
    removed = []
    for path in root.glob("job-*"):
        match = _JOB_DIR.match(path.name)
        if not match or not path.is_dir() or _alive(int(match.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.warning("removed %d scratch folder(s) of killed jobs in %s", len(removed), root)
    return removed
