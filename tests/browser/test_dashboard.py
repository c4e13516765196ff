"""The RQ dashboard's same-origin rule in a real headless Chromium, logged in.

dashboard_flow.mjs visits another site's page that posts "empty the queue" to the dashboard (the
browser adds the login, as one that has it cached does), then uses the dashboard's own "Empty
queue" button. The first must be refused with the job still in Redis; the second, a jQuery
`$.post` from the dashboard's page, must carry that page's Origin and work.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.dashboard import PASSWORD, USER, queued_job, running_dashboard
from tests.services import RedisServer

if TYPE_CHECKING:
    from tests.browser.conftest import BrowserTools

pytestmark = pytest.mark.browser


@contextlib.contextmanager
def other_site(page: str) -> Iterator[str]:
    """A page served from another origin (another port), as any web site the operator visits."""
    body = page.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_cross_site_post_fails_and_the_dashboards_own_button_works(
    browser_tools: BrowserTools, redis_server: RedisServer, tmp_path: Path
) -> None:
    with running_dashboard(redis_server.url, tmp_path) as dashboard, queued_job(redis_server.url) as job:
        action = f"{dashboard.url}/queue/{job.queue_name}/queued/empty"
        attack = f'<form method="POST" action="{action}"></form><script>document.forms[0].submit()</script>'
        with other_site(attack) as evil_url:
            env = {
                **os.environ,
                "DASHBOARD_URL": dashboard.url,
                "EVIL_URL": evil_url,
                "QUEUE": job.queue_name,
                "JOB_ID": job.job_id,
                "DASHBOARD_USER": USER,
                "DASHBOARD_PASSWORD": PASSWORD,
                "CHROMIUM": browser_tools.chromium,
            }
            done = subprocess.run(
                [browser_tools.node, "dashboard_flow.mjs"],
                cwd=browser_tools.workdir, env=env, capture_output=True, text=True, timeout=180, check=False,
            )  # fmt: skip
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"the browser script printed no report:\n{done.stdout}\n{done.stderr}\n{dashboard.log_text()}")
        context = f"\nsteps: {report['steps']}\n{done.stderr[-3000:]}\n{dashboard.log_text()[-3000:]}"
        assert done.returncode == 0 and "failure" not in report, f"{report.get('failure')}{context}"

        # The other site's POST carried its own Origin and the login, and was refused; the job stayed.
        cross = report["crossSite"]
        assert cross["origin"] == evil_url.rstrip("/"), cross
        assert cross["status"] == 403 and json.loads(cross["body"])["error"]["code"] == "CROSS_SITE_REQUEST"
        assert report["rowsBefore"] == 1

        # The dashboard's own button: its $.post carries the dashboard's Origin and empties the queue.
        own = report["sameOrigin"]
        assert own["origin"] == dashboard.url, own
        assert own["status"] == 200 and json.loads(own["body"]) == {"status": "OK"}
        assert report["rowsAfter"] == 0
        assert job.queued_ids() == []
        assert report["frameHeaders"] == {"csp": "frame-ancestors 'none'", "xfo": "DENY"}
        assert report["pageErrors"] == []
