"""The job function, and the one place that knows the order of stages.

analysis:    fetch → probe → listen (beats) → analyze → smooth → metrics → render → export → upload → succeeded
comparison:  fetch both analyses' results → align → render side by side → export → upload → succeeded

An analysis uploaded with a reference has a comparison waiting for it: when the
analysis ends, whatever its status, the comparison is queued (it fails at once,
INPUT_UNAVAILABLE, if the analysis did not succeed; the reconciler queues it if
this worker dies first).

Whatever happens, the job ends in a final status: `succeeded` only after every
result is in storage; `failed` with a stable code otherwise; a canceled job
stops at its next progress report. A job that did not succeed leaves no results.
A run that is cut off (the worker killed or shut down) is run again from the
stored upload by the reconciler (shared/reconcile.py); every stage writes
only to the job's scratch folder or to keys a second run overwrites, so any
stage is safe to run twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from pathlib import Path

from rq.timeouts import JobTimeoutException

from shared.errors import ErrorCode, JobCanceled, ServiceError, public_reason
from shared.jobs import JobKind, JobRecord, JobStage, JobStatus
from shared.keys import ResultName
from shared.logs import job_context
from shared.metrics import Metrics
from worker import scratch
from worker.context import WorkerContext, get_context
from worker.pipeline import beats, compare, compare_render, export, fetch, metrics, probe, render, smooth, upload
from worker.progress import JobReporter
from worker.timeouts import budget_seconds, deadline_after, narrow_hard_timeout

log = logging.getLogger(__name__)


def run_job(job_id: str) -> str:
    """RQ entry point: takes only the job id. Returns the final status."""
    return run(get_context(), job_id)


def run(ctx: WorkerContext, job_id: str) -> str:
    with job_context(job_id):  # every line logged while the job runs carries its id
        return _run(ctx, job_id)


def _run(ctx: WorkerContext, job_id: str) -> str:
    record = ctx.store.get(job_id)
    if record is None:
        log.info("job %s no longer exists; nothing to do", job_id)
        return "missing"
    # Presence first, then the record: whoever sees the job running also sees who holds it.
    if ctx.presence is not None:
        ctx.presence.hold(job_id)
    try:
        return _run_attempt(ctx, record)
    finally:
        if ctx.presence is not None:
            ctx.presence.release()


def _run_attempt(ctx: WorkerContext, record: JobRecord) -> str:
    job_id = record.job_id
    if not ctx.store.start(job_id, ctx.worker_name):
        # Canceled while queued (or run by another worker already): never runs.
        log.info("job %s is %s; not running it", job_id, record.status.value)
        return record.status.value
    record = ctx.store.get(job_id) or record
    log.info("job %s: attempt %d of %d", job_id, record.attempts, record.max_attempts)

    reporter = JobReporter(ctx.store, job_id, every_frames=ctx.settings.progress_every_frames, kind=record.kind)
    outcome: JobStatus | None = None  # the final status this run gave the job, for the metrics
    try:
        with reporter, scratch.job_dir(ctx.settings.work_dir, job_id) as tmp:
            results = _run_through_outages(ctx, record, reporter, Path(tmp))
        if not ctx.store.succeed(job_id, results, frames_done=reporter.frames_total, actor=f"worker:{ctx.worker_name}"):
            raise JobCanceled(job_id)
        outcome = JobStatus.SUCCEEDED
        return outcome.value
    except JobCanceled:
        current = ctx.store.get(job_id)
        if current is not None and current.status is not JobStatus.CANCELED:
            # Not canceled: the reconciler took the job from this worker (it looked dead, e.g.
            # through a long Redis outage) and another run owns its results now. Touch nothing.
            log.warning("job %s was released from this worker (now %s); stopping", job_id, current.status.value)
            return "released"
        upload.discard_results(ctx.storage, job_id)
        log.info("job %s canceled", job_id)
        outcome = JobStatus.CANCELED
        return outcome.value
    except ServiceError as exc:
        outcome = JobStatus.FAILED
        _fail(ctx, job_id, exc)
        raise
    except JobTimeoutException as exc:
        outcome = JobStatus.FAILED
        _fail(ctx, job_id, ServiceError(ErrorCode.JOB_TIMEOUT, "The analysis ran out of time and was stopped."))
        raise exc
    except (SystemExit, KeyboardInterrupt):
        # A cold shutdown (a second SIGTERM) stops the worker inside the job: the job goes back
        # to the queue (RQ records this run as failed; the reconciler enqueues the job again).
        current = ctx.store.get(job_id)
        if current is not None:
            with contextlib.suppress(Exception):
                ctx.reconciler.release(current, "the worker was shut down while running it", requeue=False)
        raise
    except Exception as exc:
        outcome = JobStatus.FAILED
        _fail(
            ctx,
            job_id,
            ServiceError(
                ErrorCode.INTERNAL_ERROR,
                "The analysis failed unexpectedly.",
                {"exception": type(exc).__name__, "reason": public_reason(str(exc))},
            ),
        )
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        raise
    finally:
        if outcome is not None:
            _observe(ctx, record, reporter, outcome)
            ctx.reconciler.queue_follower(record)


def _observe(ctx: WorkerContext, record: JobRecord, reporter: JobReporter, outcome: JobStatus) -> None:
    """The run's figures for /metrics (shared/metrics.py), and in the log; a failure to write them is only logged."""
    finished = time.time()
    # Per job, where /metrics only has sums: where the time of one slow job went.
    log.info(
        "job %s %s in %.2f s: %s",
        record.job_id,
        outcome.value,
        finished - record.started_at if record.started_at else 0.0,
        ", ".join(f"{timing.stage} {timing.seconds:.2f} s" for timing in reporter.timings) or "no stage completed",
    )
    Metrics(ctx.redis, ctx.store.keys).job_done(
        status=outcome.value,
        waited_seconds=finished - record.created_at,
        run_seconds=finished - record.started_at if record.started_at else None,
        stages=reporter.timings,
        profile=record.profile.value,
    )


def _run_through_outages(ctx: WorkerContext, record: JobRecord, reporter: JobReporter, tmp: Path) -> list[str]:
    """The stages; when storage becomes unreachable, wait for it and run them again.

    Failing the job instead would fail every queued job in turn within seconds of an
    outage (the worker takes the next one at once). The job stays `running` while it
    waits (its heartbeat goes on, a cancel still stops it); after
    `STORAGE_OUTAGE_WAIT_SECONDS` without storage it fails STORAGE_UNAVAILABLE.
    """
    while True:
        try:
            return _run_stages(ctx, record, reporter, tmp)
        except ServiceError as exc:
            if not _is_outage(exc) or not _wait_for_storage(ctx, reporter):
                raise
            # Storage is back: whatever part of the result set got through goes, then all again.
            reporter.drop_stage()
            upload.discard_results(ctx.storage, record.job_id)
            log.warning("job %s: storage is back after an outage; running the stages again", record.job_id)


STORAGE_OUTAGE_WAIT_SECONDS = 600.0


def _is_outage(exc: ServiceError) -> bool:
    # Unreachable, not a refusal (bad credentials, no such bucket): only an outage ends by itself.
    return exc.code is ErrorCode.STORAGE_UNAVAILABLE and "s3_code" not in exc.details


def _wait_for_storage(ctx: WorkerContext, reporter: JobReporter) -> bool:
    give_up = time.monotonic() + STORAGE_OUTAGE_WAIT_SECONDS
    # The video's time budget starts again with the next run of the stages (at probe).
    reporter.deadline = None
    narrow_hard_timeout(int(STORAGE_OUTAGE_WAIT_SECONDS) + 60)
    delay = 0.5
    log.warning("job %s: storage unreachable; waiting up to %.0f s", reporter.job_id, STORAGE_OUTAGE_WAIT_SECONDS)
    while time.monotonic() < give_up:
        time.sleep(delay)
        if reporter.is_canceled():
            raise JobCanceled(reporter.job_id)
        try:
            ctx.storage.ping()
            return True
        except ServiceError:
            delay = min(delay * 2, 5.0)
    return False


def _run_stages(ctx: WorkerContext, record: JobRecord, reporter: JobReporter, tmp: Path) -> list[str]:
    if record.kind is JobKind.COMPARISON:
        files = _comparison_stages(ctx, record, reporter, tmp)
    else:
        files = _analysis_stages(ctx, record, reporter, tmp)

    reporter.enter(JobStage.UPLOADING)
    try:
        names = upload.upload_results(ctx.storage, record.job_id, files)
    except BaseException:
        upload.discard_results(ctx.storage, record.job_id)
        raise
    reporter.end_stage()
    reporter.check()
    return names


def _analysis_stages(ctx: WorkerContext, record: JobRecord, reporter: JobReporter, tmp: Path) -> dict[ResultName, Path]:
    settings, job_id = ctx.settings, record.job_id

    reporter.enter(JobStage.FETCHING)
    source = fetch.fetch(ctx.storage, record.source_key, tmp)

    reporter.enter(JobStage.PROBING)
    video = probe.probe(source, max_seconds=settings.max_video_seconds, max_pixels=settings.max_video_pixels)
    budget = budget_seconds(settings, video.duration)
    reporter.deadline = deadline_after(budget)
    narrow_hard_timeout(budget)
    reporter.save(video=video.to_dict(), frames_total=video.frame_count)

    reporter.enter(JobStage.LISTENING)
    music = beats.find_beats(source)

    reporter.enter(JobStage.ANALYZING, frames_total=video.frame_count)
    poses = ctx.analyzer.analyze(video, record.profile, reporter.frames, music=music)
    poses = smooth.smooth_sequence(poses, video.width, video.height)
    summary = metrics.compute_metrics(job_id, video, poses, music)

    reporter.enter(JobStage.RENDERING, frames_total=video.frame_count)
    files = {ResultName.ANNOTATED_VIDEO: tmp / ResultName.ANNOTATED_VIDEO.value}
    render.render(
        video,
        poses,
        files[ResultName.ANNOTATED_VIDEO],
        preset=settings.render_preset,
        crf=settings.render_crf,
        progress=reporter.frames,
    )

    reporter.enter(JobStage.EXPORTING)
    files.update(export.export(tmp, job_id, video, poses, summary, music))
    return files


def _comparison_stages(
    ctx: WorkerContext, record: JobRecord, reporter: JobReporter, tmp: Path
) -> dict[ResultName, Path]:
    settings, inputs = ctx.settings, record.inputs
    if inputs is None:
        raise ServiceError(ErrorCode.INTERNAL_ERROR, "The comparison job has no inputs.")

    reporter.enter(JobStage.FETCHING)
    reference, attempt = (
        compare.fetch_input(ctx.storage, ctx.store, job_id, role, tmp)
        for job_id, role in ((inputs.reference_job_id, "reference"), (inputs.attempt_job_id, "attempt"))
    )
    duration = max(float((p.record.video or {}).get("duration") or 0.0) for p in (reference, attempt))
    budget = budget_seconds(settings, duration)
    reporter.deadline = deadline_after(budget)
    narrow_hard_timeout(budget)

    reporter.enter(JobStage.ALIGNING)
    alignment, reference_side, attempt_side = compare.compare(reference, attempt, inputs)

    files = {name: tmp / name.value for name in (ResultName.COMPARISON_VIDEO, ResultName.COMPARISON_JSON)}
    reporter.enter(JobStage.RENDERING, frames_total=reference.record.frames_total or None)
    compare_render.render_side_by_side(
        reference.video_path,
        attempt.video_path,
        alignment,
        files[ResultName.COMPARISON_VIDEO],
        preset=settings.render_preset,
        crf=settings.render_crf,
        progress=reporter.frames,
    )

    reporter.enter(JobStage.EXPORTING)
    document = compare.comparison_document(record.job_id, inputs, alignment, reference_side, attempt_side)
    export.write_json(files[ResultName.COMPARISON_JSON], document)
    return files


def _fail(ctx: WorkerContext, job_id: str, error: ServiceError) -> None:
    upload.discard_results(ctx.storage, job_id)
    ctx.store.fail(job_id, error, only_if=(JobStatus.RUNNING,), actor=f"worker:{ctx.worker_name}")
    log.warning("job %s failed: %s %s", job_id, error.code.value, error.message)
