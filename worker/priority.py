"""Run the worker below the API in the CPU's eyes, so polling clients are served first.

`setpriority` on the process alone is not enough on Linux: threads already
started (OpenBLAS starts its own at import) keep their niceness, and with
`sched_autogroup` (the default on desktop kernels) each session is scheduled
as one group, so a worker started in its own session (`setsid`, as
`./manage.sh local` does) competes with the API as a whole session whatever
its niceness. So every thread is reniced, and a session leader also renices
its autogroup. In containers each service is its own cgroup; there the
Compose file's CPU weights do this job.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def lower_priority(niceness: int) -> None:
    if niceness <= os.getpriority(os.PRIO_PROCESS, 0):
        return
    os.setpriority(os.PRIO_PROCESS, 0, niceness)
    tasks = Path("/proc/self/task")
    if tasks.is_dir():
        for task in tasks.iterdir():
            with contextlib.suppress(OSError, ValueError):
                os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)
    if os.getsid(0) == os.getpid():  # a session leader: its autogroup is its own, not the API's
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text(f"{niceness}\n")
