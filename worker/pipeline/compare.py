"""Aligning stage of a comparison job: two analyses' poses.json in, comparison.json out.

The comparison reads what the two analyses wrote (poses.json for the alignment,
annotated.mp4 for the side-by-side render in worker/pipeline/compare_render.py)
and never runs pose estimation again. One dancer of each video is compared:
the one asked for, else the one seen longest (a teacher's video usually has
one dancer; an attempt filmed in class may have the others in view too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from shared.errors import ErrorCode, ServiceError
from shared.jobs import Comparison, JobKind, JobRecord, JobStatus, JobStore
from shared.keys import ResultName, result_key
from shared.result_schemas import COMPARISON_VERSION
from shared.storage import Storage, is_missing
from worker.pipeline.align import Alignment, NotEnoughPose, PoseSeries, align


@dataclass(frozen=True)
class Performance:
    """One side of a comparison: the analysis job and what the comparison reads of it."""

    role: str  # "reference" or "attempt"
    record: JobRecord
    poses_path: Path
    video_path: Path


def _unavailable(role: str, job_id: str, why: str, **details: object) -> ServiceError:
    return ServiceError(
        ErrorCode.INPUT_UNAVAILABLE,
        f"The {role} {job_id!r} {why}; there is nothing to compare.",
        {"role": role, "job_id": job_id, **details},
    )


def input_record(store: JobStore, job_id: str, role: str) -> JobRecord:
    """The input analysis as it is now: it may have failed, been canceled or deleted since the
    comparison was asked for (or, for one uploaded with a reference, be the analysis that just ended).
    Who may compare it was checked when the comparison was made (an owner never changes)."""
    record = store.get(job_id)
    if record is None:
        raise _unavailable(role, job_id, "no longer exists")
    if record.kind is not JobKind.ANALYSIS:
        raise _unavailable(role, job_id, "is not an analysis", kind=record.kind.value)
    if record.status is not JobStatus.SUCCEEDED:
        why = f"is {record.status.value}"
        if record.error:
            why += f" ({record.error.get('code')}: {record.error.get('message')})"
        raise _unavailable(role, job_id, why, status=record.status.value)
    return record


def fetch_input(storage: Storage, store: JobStore, job_id: str, role: str, work_dir: Path) -> Performance:
    record = input_record(store, job_id, role)
    folder = work_dir / role
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in (ResultName.POSES_JSON, ResultName.ANNOTATED_VIDEO):
        paths[name] = folder / name.value
        try:
            storage.download_file(result_key(job_id, name), paths[name])
        except ClientError as exc:
            if is_missing(exc):
                raise _unavailable(role, job_id, f"has no {name.value} in storage any more") from exc
            raise
    return Performance(role, record, paths[ResultName.POSES_JSON], paths[ResultName.ANNOTATED_VIDEO])


def pick_track(poses: dict[str, Any], asked: int | None, role: str, job_id: str) -> int:
    """The dancer asked for, else the one seen in the most frames."""
    tracks = {int(t["track_id"]): int(t.get("frames_in_view", len(t["detections"]))) for t in poses["tracks"]}
    if asked is not None:
        if asked not in tracks:
            raise ServiceError(
                ErrorCode.NOT_ENOUGH_POSE,
                f"The {role} {job_id!r} has no dancer #{asked}; its dancers are {sorted(tracks) or 'none'}.",
                {"role": role, "job_id": job_id, "track_id": asked, "tracks": sorted(tracks)},
            )
        return asked
    if not tracks:
        raise ServiceError(
            ErrorCode.NOT_ENOUGH_POSE,
            f"No dancer was found in the {role} {job_id!r}.",
            {"role": role, "job_id": job_id},
        )
    return max(tracks, key=lambda t: (tracks[t], -t))


@dataclass(frozen=True)
class Side:
    """What comparison.json says about one side."""

    job_id: str
    track_id: int
    filename: str
    duration: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "track_id": self.track_id, "filename": self.filename, "duration": self.duration}


def _side(performance: Performance, poses: dict[str, Any], track_id: int) -> Side:
    duration = (poses.get("video") or {}).get("duration")
    return Side(performance.record.job_id, track_id, performance.record.filename, duration)


def compare(reference: Performance, attempt: Performance, comparison: Comparison) -> tuple[Alignment, Side, Side]:
    """Align the attempt's dancer onto the reference's. Each poses.json is parsed once and let go."""
    series = []
    sides = []
    for performance, asked in ((reference, comparison.reference_track_id), (attempt, comparison.attempt_track_id)):
        with performance.poses_path.open() as handle:
            poses = json.load(handle)
        track_id = pick_track(poses, asked, performance.role, performance.record.job_id)
        series.append(PoseSeries.from_track(poses, track_id))
        sides.append(_side(performance, poses, track_id))
        del poses
    try:
        alignment = align(series[0], series[1], mirror=comparison.mirror.option)
    except NotEnoughPose as exc:
        raise ServiceError(
            ErrorCode.NOT_ENOUGH_POSE,
            f"Too little of the dancers was seen to compare them: {exc}",
            {"reference_track_id": sides[0].track_id, "attempt_track_id": sides[1].track_id},
        ) from exc
    return alignment, sides[0], sides[1]


def comparison_document(
    job_id: str, comparison: Comparison, alignment: Alignment, reference: Side, attempt: Side
) -> dict[str, Any]:
    """comparison.json (shared/schemas/comparison.schema.json)."""
    return {
        "schema_version": COMPARISON_VERSION,
        "job_id": job_id,
        "reference": reference.to_dict(),
        "attempt": attempt.to_dict(),
        "mirror": comparison.mirror.value,
        **alignment.to_dict(),
    }
