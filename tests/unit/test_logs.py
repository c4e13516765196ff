"""shared/logs.py: one JSON object per line, the job id from the context, one handler for all loggers."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import logging.config
import sys
import threading
from collections.abc import Iterator
from datetime import datetime

import pytest
from pydantic import ValidationError
from rq.logutils import setup_loghandlers
from uvicorn.config import LOGGING_CONFIG

from shared.logs import JsonFormatter, TextFormatter, configure_logging, current_job_id, job_context
from shared.settings import Settings


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("worker.tasks", logging.INFO, __file__, 1, message, args or ("there",), None)
    made.__dict__.update(extra)
    return made


def test_a_line_is_one_json_object_with_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(record())
    assert "\n" not in line
    parsed = json.loads(line)
    assert set(parsed) == {"time", "level", "logger", "message"}
    assert (parsed["level"], parsed["logger"], parsed["message"]) == ("INFO", "worker.tasks", "hello there")
    # ISO 8601 in UTC, milliseconds.
    assert parsed["time"].endswith("Z") and len(parsed["time"]) == len("2026-11-21T10:04:05.123Z")
    assert datetime.fromisoformat(parsed["time"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0


def test_the_job_id_comes_from_the_context_and_goes_with_it() -> None:
    formatter = JsonFormatter()
    assert current_job_id() is None
    with job_context("a" * 32):
        assert json.loads(formatter.format(record()))["job_id"] == "a" * 32
        with job_context("b" * 32):
            assert json.loads(formatter.format(record()))["job_id"] == "b" * 32
        assert current_job_id() == "a" * 32
    assert "job_id" not in json.loads(formatter.format(record()))


def test_a_job_id_given_with_the_call_wins() -> None:
    with job_context("a" * 32):
        assert json.loads(JsonFormatter().format(record(job_id="c" * 32)))["job_id"] == "c" * 32


def test_the_context_is_per_thread_and_per_task() -> None:
    seen: dict[str, str | None] = {}

    def other_thread() -> None:
        seen["thread"] = current_job_id()

    async def task(job_id: str) -> str | None:
        with job_context(job_id):
            await asyncio.sleep(0.01)  # the other task runs meanwhile with its own id
            return current_job_id()

    async def both() -> list[str | None]:
        return list(await asyncio.gather(task("1" * 32), task("2" * 32)))

    with job_context("a" * 32):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert seen["thread"] is None
    assert asyncio.run(both()) == ["1" * 32, "2" * 32]


def test_an_exception_goes_in_exc_info_and_the_line_stays_one_line() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        made = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", ("it",), sys.exc_info())
    line = JsonFormatter().format(made)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed: it"
    assert parsed["exc_info"].startswith("Traceback") and "ValueError: bad\nthing" in parsed["exc_info"]


def test_terminal_colours_from_rq_are_taken_out() -> None:
    coloured = record("%s: %s", "\x1b[32manalysis\x1b[39;49;00m", "\x1b[34mJob OK\x1b[39;49;00m")
    assert json.loads(JsonFormatter().format(coloured))["message"] == "analysis: Job OK"


def test_text_lines_name_the_job() -> None:
    with job_context("a" * 32):
        line = TextFormatter().format(record())
    assert line.endswith(f"INFO worker.tasks [job {'a' * 32}]: hello there")
    assert TextFormatter().format(record()).endswith("INFO worker.tasks: hello there")


def test_log_format_is_checked_at_start() -> None:
    assert Settings().log_format == "json"
    assert Settings(log_format="TEXT").log_format == "text"  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Settings(log_format="xml")  # type: ignore[arg-type]


@contextlib.contextmanager
def bare_logging() -> Iterator[None]:
    """The root logger as a fresh process has it (pytest's capture handlers, which it adds for each
    test phase, set aside), restored after."""
    root = logging.getLogger()
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "rq.worker", "rq.job")
    loggers = {name: logging.getLogger(name) for name in names}
    saved = root.handlers[:], root.level, {name: (lg.handlers[:], lg.propagate) for name, lg in loggers.items()}
    root.handlers.clear()
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, (handlers, propagate) in saved[2].items():
            loggers[name].handlers[:] = handlers
            loggers[name].propagate = propagate


def test_every_logger_goes_through_one_handler_rq_and_uvicorn_included() -> None:
    stream = io.StringIO()
    with bare_logging():
        logging.config.dictConfig(LOGGING_CONFIG)  # what uvicorn does before it calls create_app
        first = configure_logging(Settings(), stream=io.StringIO())
        handler = configure_logging(Settings(), stream=stream)  # a second call replaces, not adds
        assert handler is not None and first is not handler
        assert logging.getLogger().handlers == [handler]
        setup_loghandlers("INFO", name="rq.worker")  # what RQ's worker does when it starts working
        assert logging.getLogger("rq.worker").handlers == []

        with job_context("d" * 32):
            for name in ("rq.worker", "uvicorn.error", "uvicorn.access", "worker.tasks"):
                logging.getLogger(name).info("from %s", name)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["logger"] for line in lines] == ["rq.worker", "uvicorn.error", "uvicorn.access", "worker.tasks"]
    assert {line["job_id"] for line in lines} == {"d" * 32}


def test_no_access_log_stays_off() -> None:
    access = logging.getLogger("uvicorn.access")
    with bare_logging():
        access.handlers, access.propagate = [], False  # uvicorn --no-access-log
        configure_logging(Settings(), stream=io.StringIO())
        assert access.propagate is False and not access.hasHandlers()


def test_logging_someone_else_set_up_is_left_alone() -> None:
    # Under pytest the root logger has pytest's capture handlers: like basicConfig, nothing changes.
    before = logging.getLogger().handlers[:]
    assert before
    assert configure_logging(Settings(), stream=io.StringIO()) is None
    assert logging.getLogger().handlers == before
