"""The side-by-side comparison video (worker/pipeline/compare_render.py) on real H.264 clips.

Every source frame shows its own index as a row of eight black/white blocks (big enough to survive
scaling and H.264), and a red block low on its left edge (which way round it is). Reading both halves of
every output frame back proves which reference frame and which attempt frame were paired.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from shared.errors import ErrorCode, ServiceError
from shared.skeletons import COCO17
from tests.clips import vfr_times, write_clip
from tests.synthetic import truncated_copy
from worker.pipeline import probe, render
from worker.pipeline.align import Alignment
from worker.pipeline.compare_render import render_side_by_side
from worker.pipeline.decode import frame_times, to_bgr
from worker.pipeline.records import Detections, PoseSequence

BITS = 8
FPS = 30.0
SIZE = (320, 180)
HEIGHT = 120
CODE_ROWS = (0.35, 0.65)  # the code's band, clear of the labels (top) and the similarity box and bar (bottom)
MARKER_ROWS = (0.67, 0.76)


def coded_frame(index: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    width, height = size
    image = np.full((height, width, 3), 90, np.uint8)
    top, bottom = (round(height * r) for r in CODE_ROWS)
    for bit in range(BITS):
        on = (index >> (BITS - 1 - bit)) & 1
        image[top:bottom, bit * width // BITS : (bit + 1) * width // BITS] = 235 if on else 20
    m0, m1 = (round(height * r) for r in MARKER_ROWS)
    image[m0:m1, : width // 6] = (0, 0, 255)
    return image


def read_code(half: np.ndarray) -> int:
    height, width = half.shape[:2]
    y = height // 2
    value = 0
    for bit in range(BITS):
        x = int((bit + 0.5) * width / BITS)
        value = value * 2 + int(half[y - 1 : y + 2, x - 1 : x + 2].mean() > 128)
    return value


def red_side(half: np.ndarray) -> str:
    """Which edge of the half the red marker is on."""
    height, width = half.shape[:2]
    y = round(height * sum(MARKER_ROWS) / 2)

    def red(x: int) -> bool:
        b, g, r = half[y, x].astype(int)
        return r > 150 and b < 100 and g < 100

    left, right = red(width // 12), red(width - 1 - width // 12)
    assert left != right, "the marker must be on exactly one side"
    return "left" if left else "right"


def annotated(raw: Path, out: Path) -> Path:
    """`raw` through the analysis' own render (nobody in it): an annotated.mp4 exactly as a job writes it
    (libx264 veryfast with B-frames, the source's timestamps, the audio copied)."""
    video = probe.probe(raw)
    nobody = PoseSequence(COCO17, np.zeros(video.frame_count), Detections.empty(len(COCO17.keypoints)), {})
    render.render(video, nobody, out, preset="ultrafast")
    return out


def alignment(times: np.ndarray, matched: np.ndarray, similarity: np.ndarray, mirrored: bool = False) -> Alignment:
    return Alignment(
        mirrored=mirrored,
        path=np.zeros((0, 2), np.int64),
        times=times,
        attempt_times=np.unique(matched),
        matched_time=matched,
        similarity=similarity,
        keypoint_similarity=np.zeros((len(times), 0)),
        names=(),
        score=0.75,
        moments=[],
        band_s=2.0,
        cost=0.0,
        keypoint_weights=np.zeros(0),
        other_score=None,
    )


def output_frames(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        frames = [(to_bgr(f), f.pts * f.time_base) for f in container.decode(video=0)]
    start = frames[0][1]
    return [image for image, _ in frames], [float(t - start) for _, t in frames]


def even_half(width: int, height: int, out_height: int) -> tuple[int, int]:
    scaled = round(width * out_height / height)
    return scaled, scaled + scaled % 2


def top_level_atoms(path: Path) -> list[str]:
    data, atoms, at = path.read_bytes(), [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        atoms.append(data[at + 4 : at + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[at + 8 : at + 16], "big")
        if size < 8:
            break
        at += size
    return atoms


# The reference: 60 frames at a variable rate (steps of 1 and 2 frame times), with music. The attempt: 100
# frames at 30 fps, doing each move 20 % slower and starting 0.5 s late. The dancer is aligned only from 0.3 s
# to 2.0 s of the reference; similarity 0.75 in the first half of that, unseen (NaN) in the second.
REF_TIMES = vfr_times(60, FPS)
ATT_TIMES = [i / FPS for i in range(100)]
GRID = 0.3 + np.arange(round(1.7 * 30) + 1) / 30
MATCHED = 0.5 + 1.2 * GRID
SIMILARITY = np.where(np.arange(len(GRID)) < len(GRID) // 2, 0.75, np.nan)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("compare")
    write_clip(
        [coded_frame(i) for i in range(len(REF_TIMES))], folder / "ref_raw.mp4", FPS, audio=True, times=REF_TIMES
    )
    write_clip([coded_frame(i) for i in range(len(ATT_TIMES))], folder / "att_raw.mp4", FPS, times=ATT_TIMES)
    return {
        "reference": annotated(folder / "ref_raw.mp4", folder / "reference.mp4"),
        "attempt": annotated(folder / "att_raw.mp4", folder / "attempt.mp4"),
        "folder": folder,
    }


@pytest.fixture(scope="module")
def side_by_side(clips: dict[str, Path]) -> dict[str, object]:
    out = clips["folder"] / "comparison.mp4"
    seen: list[int] = []
    written = render_side_by_side(
        clips["reference"],
        clips["attempt"],
        alignment(GRID, MATCHED, SIMILARITY),
        out,
        height=HEIGHT,
        preset="ultrafast",
        progress=seen.append,
    )
    images, times = output_frames(out)
    return {"path": out, "written": written, "progress": seen, "images": images, "times": times}


def halves(image: np.ndarray, left: tuple[int, int], right: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The two scaled pictures (without their padding) of an output frame."""
    return image[:, : left[0]], image[:, left[1] : left[1] + right[0]]


def expected_attempt_frame(reference_time: float) -> int:
    matched = np.interp(reference_time, GRID, MATCHED)
    return int(np.argmin(np.abs(np.asarray(ATT_TIMES) - matched)))


def test_each_output_frame_pairs_the_reference_frame_with_the_attempt_frame_at_the_matched_time(
    side_by_side: dict, clips: dict[str, Path]
) -> None:
    images = side_by_side["images"]
    reference_times = frame_times(clips["reference"])
    assert len(images) == len(reference_times) == len(REF_TIMES) == side_by_side["written"]
    half = even_half(*SIZE, HEIGHT)
    exact = 0
    for k, image in enumerate(images):
        ref, att = halves(image, half, half)
        assert read_code(ref) == k
        expected = expected_attempt_frame(reference_times[k])
        got = read_code(att)
        assert abs(got - expected) <= 1, (
            f"output frame {k} at {reference_times[k]:.3f} s: attempt {got}, not {expected}"
        )
        exact += got == expected
        assert red_side(ref) == red_side(att) == "left"
    assert exact >= 0.9 * len(images)
    # Before and after the aligned span the attempt holds its first and last matched frames.
    first, last = expected_attempt_frame(0.0), expected_attempt_frame(99.0)
    assert (first, last) == (round(0.86 * FPS), round(2.9 * FPS))
    assert read_code(halves(images[0], half, half)[1]) == first
    assert read_code(halves(images[-1], half, half)[1]) == last


def test_output_keeps_the_reference_timeline_codec_faststart_and_music(side_by_side: dict, clips: dict) -> None:
    reference_times = frame_times(clips["reference"])
    assert side_by_side["times"] == pytest.approx(reference_times, abs=1e-4)
    assert reference_times == pytest.approx(REF_TIMES, abs=1e-4)  # variable rate: index / fps would not do
    assert side_by_side["progress"] == list(range(1, len(REF_TIMES) + 1))
    path = side_by_side["path"]
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.name == "aac"
    atoms = top_level_atoms(path)
    assert atoms.index("moov") < atoms.index("mdat")
    info = probe.probe(path)
    assert (info.width, info.height) == (2 * even_half(*SIZE, HEIGHT)[1], HEIGHT)
    assert info.duration == pytest.approx(probe.probe(clips["reference"]).duration, abs=1e-3)


def bar_fill(image: np.ndarray) -> tuple[float, float]:
    """(share of the bottom row that is coloured, its mean brightness)."""
    row = image[-2].astype(int)
    coloured = (row.max(axis=1) - row.min(axis=1)) > 80
    return float(coloured.mean()), float(row.mean())


def test_bar_shows_the_similarity_and_is_gray_where_not_seen(side_by_side: dict) -> None:
    images, times = side_by_side["images"], side_by_side["times"]
    mid_seen = float(GRID[len(GRID) // 4])
    mid_unseen = float(GRID[3 * len(GRID) // 4])
    by_time = {
        name: int(np.argmin(np.abs(np.asarray(times) - t))) for name, t in (("seen", mid_seen), ("unseen", mid_unseen))
    }
    share, _ = bar_fill(images[by_time["seen"]])
    assert share == pytest.approx(0.75, abs=0.04)
    for k in (0, by_time["unseen"], len(images) - 1):  # before the span, NaN inside it, after it
        share, brightness = bar_fill(images[k])
        assert share < 0.02
        assert brightness == pytest.approx(128, abs=20)


def test_mirrored_alignment_flips_the_attempt_half_only(clips: dict[str, Path]) -> None:
    out = clips["folder"] / "mirrored.mp4"
    render_side_by_side(
        clips["reference"],
        clips["attempt"],
        alignment(GRID, MATCHED, SIMILARITY, mirrored=True),
        out,
        height=HEIGHT,
        preset="ultrafast",
    )
    images, _ = output_frames(out)
    reference_times = frame_times(clips["reference"])
    half = even_half(*SIZE, HEIGHT)
    for k in (0, 20, len(images) - 1):
        ref, att = halves(images[k], half, half)
        assert red_side(ref) == "left"
        assert red_side(att) == "right"
        assert abs(read_code(att[:, ::-1]) - expected_attempt_frame(reference_times[k])) <= 1


def test_landscape_reference_and_rotated_portrait_phone_attempt(tmp_path: Path) -> None:
    """A 320x180 reference beside a phone's 180x320 attempt stored turned with a display matrix: each half
    upright at the output height, widths padded to even, no audio when the reference has none."""
    reference, attempt, out = tmp_path / "ref.mp4", tmp_path / "att.mp4", tmp_path / "out.mp4"
    count = 12
    write_clip([coded_frame(i, (320, 180)) for i in range(count)], reference, FPS)
    write_clip([coded_frame(i, (180, 320)) for i in range(count)], attempt, FPS, rotation=90)
    times = np.arange(count) / FPS
    height = 240
    written = render_side_by_side(
        reference, attempt, alignment(times, times, np.full(count, 0.9)), out, height=height, preset="ultrafast"
    )
    assert written == count
    left, right = even_half(320, 180, height), even_half(180, 320, height)
    assert (left, right) == ((427, 428), (135, 136))
    info = probe.probe(out)
    assert (info.width, info.height) == (left[1] + right[1], height)
    assert info.width % 2 == 0 and info.height % 2 == 0
    assert not info.has_audio
    images, _ = output_frames(out)
    for k, image in enumerate(images):
        ref, att = halves(image, left, right)
        assert read_code(ref) == read_code(att) == k
        assert red_side(att) == "left"


def test_reference_audio_mp4_cannot_hold_is_reencoded_to_aac(tmp_path: Path) -> None:
    """A reference whose music is PCM (MKV holds it, MP4 does not) gets AAC, as render.py's AudioCopy does."""
    reference, out = tmp_path / "ref.mkv", tmp_path / "out.mp4"
    count, rate = 10, 48000
    with av.open(str(reference), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(30))
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=rate)
        audio.layout = "mono"
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(coded_frame(i), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            container.mux(video.encode(frame))
            samples = (3000 * np.sin(np.arange(rate // 30) / 8)).astype(np.int16).reshape(1, -1)
            sound = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            sound.sample_rate, sound.pts, sound.time_base = rate, i * (rate // 30), Fraction(1, rate)
            container.mux(audio.encode(sound))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    times = np.arange(count) / 30
    render_side_by_side(reference, reference, alignment(times, times, np.full(count, 0.5)), out, preset="ultrafast")
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in container.decode(audio=0)) > 0
    assert probe.probe(out).height == 480


@pytest.mark.parametrize("broken", ["reference", "attempt"])
@pytest.mark.parametrize("how", ["truncated", "not a video"])
def test_an_unreadable_input_is_invalid_video_naming_which(clips: dict, tmp_path: Path, broken: str, how: str) -> None:
    bad = tmp_path / "bad.mp4"
    if how == "truncated":
        truncated_copy(clips[broken], bad, keep=0.5)
    else:
        bad.write_bytes(b"this is a text file, not a video\n" * 100)
    paths = {"reference": clips["reference"], "attempt": clips["attempt"], broken: bad}
    out = tmp_path / "out.mp4"
    with pytest.raises(ServiceError) as caught:
        render_side_by_side(
            paths["reference"], paths["attempt"], alignment(GRID, MATCHED, SIMILARITY), out, height=HEIGHT
        )
    assert caught.value.code is ErrorCode.INVALID_VIDEO
    assert caught.value.message.startswith(f"The {broken} video cannot be read")
    assert caught.value.details["video"] == broken
    assert "Error" not in caught.value.message and "errno" not in caught.value.message.lower()
    assert not out.exists()


def test_odd_or_tiny_height_is_refused(clips: dict, tmp_path: Path) -> None:
    for height in (241, 32):
        with pytest.raises(ValueError, match="even"):
            render_side_by_side(
                clips["reference"],
                clips["attempt"],
                alignment(GRID, MATCHED, SIMILARITY),
                tmp_path / "o.mp4",
                height=height,
            )
