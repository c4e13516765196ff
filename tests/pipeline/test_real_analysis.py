"""The real analyzer on real pixels: people, tracks, keypoints, timestamps, rotation, VFR, both profiles."""

from __future__ import annotations

import numpy as np
import pytest

from shared.profiles import Profile
from shared.skeletons import BLAZEPOSE33, COCO17
from worker.pipeline.decode import frame_times
from worker.pipeline.records import PoseSequence

pytestmark = pytest.mark.pipeline

PROFILES = ("fast", "accurate")


def main_tracks(seq: PoseSequence, min_fraction: float = 0.5) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Tracks seen in at least `min_fraction` of the frames: {track_id: [(frame index, box)]}."""
    return {
        track_id: list(zip(track.frames.tolist(), track.boxes, strict=True))
        for track_id, track in seq.tracks()
        if len(track) >= min_fraction * seq.frame_count
    }


@pytest.mark.parametrize("profile", PROFILES)
def test_two_people_each_keep_one_track_id(analyze, profile):
    video, seq, _ = analyze(profile)
    tracks = main_tracks(seq)
    assert len(tracks) == 2, f"expected the 2 people of zidane.jpg, got tracks {sorted(tracks)}"
    for track_id, items in tracks.items():
        # In view the whole clip, under one id: present in (nearly) every frame ...
        assert len(items) >= 0.9 * seq.frame_count, (track_id, len(items))
        # ... and the id never jumps to the other person: the box moves smoothly.
        centres = np.array([(box[0] + box[2]) / 2 for _, box in items])
        assert np.max(np.abs(np.diff(centres))) < 0.1 * video.width, track_id
    # The two people stay apart (left one stays left).
    (_, items_a), (_, items_b) = sorted(tracks.items())
    common = {i: box for i, box in items_a}
    order = {np.sign((common[i][0] + common[i][2]) - (box[0] + box[2])) for i, box in items_b if i in common}
    assert len(order) == 1


def test_four_people_in_the_bus_photo(analyze):
    video, seq, _ = analyze("fast", photo="bus.jpg", size=(360, 480), zoom=0.04)
    assert (video.width, video.height) == (360, 480)
    tracks = main_tracks(seq)
    assert len(tracks) == 4, f"expected the 4 people of bus.jpg, got tracks {sorted(tracks)}"


@pytest.mark.parametrize("profile", PROFILES)
def test_keypoints_fall_inside_their_persons_box(analyze, profile):
    video, seq, _ = analyze(profile)
    skeleton = COCO17 if profile == "fast" else BLAZEPOSE33
    assert seq.skeleton == skeleton
    people = seq.people
    assert people.keypoints.shape[1:] == (len(skeleton.keypoints), 3)
    checked = 0
    for box, kps, frame, track_id in zip(people.boxes, people.keypoints, people.frames, people.track_ids, strict=True):
        x1, y1, x2, y2 = box
        mx, my = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
        # Boxes are clipped to the frame; BlazePose also places limbs beyond the frame's edge.
        in_frame = (kps[:, 0] >= 0) & (kps[:, 0] < video.width) & (kps[:, 1] >= 0) & (kps[:, 1] < video.height)
        confident = kps[(kps[:, 2] > 0.5) & in_frame]
        inside = (
            (confident[:, 0] >= x1 - mx) & (confident[:, 0] <= x2 + mx)
            & (confident[:, 1] >= y1 - my) & (confident[:, 1] <= y2 + my)
        )  # fmt: skip
        assert inside.mean() >= 0.9, (profile, frame, track_id)
        checked += len(confident)
    assert checked > 10 * seq.frame_count


def test_blazepose_agrees_with_yolo_on_shared_joints(analyze):
    """The accurate profile's landmarks land on the same body as YOLO's keypoints (crop mapping is right)."""
    _, fast, _ = analyze("fast")
    _, accurate, _ = analyze("accurate")
    shared = [(COCO17.index(n), BLAZEPOSE33.index(n)) for n in COCO17.keypoints if n in BLAZEPOSE33.keypoints]
    errors = []
    for f_people, a_people in zip(fast.frames(), accurate.frames(), strict=True):
        if not len(f_people):
            continue
        for box, landmarks in zip(a_people.boxes, a_people.keypoints, strict=True):
            # the fast detection whose box is nearest (track ids of two runs need not be equal)
            other = f_people.keypoints[np.argmin(np.abs(f_people.boxes - box).sum(axis=1))]
            height = box[3] - box[1]
            for ci, bi in shared:
                if other[ci, 2] > 0.5 and landmarks[bi, 2] > 0.5:
                    errors.append(np.linalg.norm(other[ci, :2] - landmarks[bi, :2]) / height)
    assert len(errors) > 100
    assert np.median(errors) < 0.08, np.median(errors)


@pytest.mark.parametrize("profile", PROFILES)
def test_one_frameposes_per_frame_with_container_times(analyze, profile):
    video, seq, written = analyze(profile)
    assert seq.frame_count == video.frame_count == len(written)
    assert len(list(seq.frames())) == len(written)
    np.testing.assert_allclose(seq.times, frame_times(video.path), atol=1e-6)
    np.testing.assert_allclose(seq.times, written, atol=2e-3)
    assert seq.generator["mode"] == "real" and seq.generator["profile"] == profile
    assert seq.generator["device"] == "cpu" and seq.generator["tracker"] == "bytetrack"


@pytest.mark.parametrize("profile", PROFILES)
def test_rotated_input_gives_upright_keypoints_matching_the_unrotated_clip(analyze, profile):
    plain_video, plain, _ = analyze(profile)
    rotated_video, rotated, _ = analyze(profile, rotation=90)
    assert rotated_video.rotation in (90, 270)
    assert (rotated_video.width, rotated_video.height) == (plain_video.width, plain_video.height)
    assert rotated.frame_count == plain.frame_count
    diagonal = float(np.hypot(plain_video.width, plain_video.height))
    distances = []
    main = main_tracks(plain)
    assert len(main_tracks(rotated)) == len(main) == 2
    for p_people, r_people in zip(plain.frames(), rotated.frames(), strict=True):
        for track_id, box, kps in zip(p_people.track_ids, p_people.boxes, p_people.keypoints, strict=True):
            if track_id not in main:
                continue
            twin = int(np.argmin(np.abs(r_people.boxes - box).sum(axis=1)))
            assert np.abs(r_people.boxes[twin] - box).max() < 0.05 * diagonal
            both = (kps[:, 2] > 0.5) & (r_people.keypoints[twin, :, 2] > 0.5)
            distances.extend(np.linalg.norm(kps[both, :2] - r_people.keypoints[twin, both, :2], axis=1))
    assert np.median(distances) < 0.01 * diagonal, np.median(distances)


def test_variable_frame_rate_keeps_its_timestamps(analyze):
    video, seq, written = analyze("fast", vfr=True)
    assert video.variable_frame_rate
    assert seq.frame_count == len(written)
    np.testing.assert_allclose(seq.times, written, atol=2e-3)
    assert len(main_tracks(seq)) == 2


def test_progress_can_cancel_midway(analyzer, clip):
    from shared.errors import JobCanceled
    from worker.pipeline.probe import probe

    video = probe(clip()[0])

    def progress(done: int) -> None:
        if done == 5:
            raise JobCanceled("job")

    with pytest.raises(JobCanceled):
        analyzer.analyze(video, Profile.FAST, progress)
