"""public_reason: absolute paths cut to their last part; everything else kept."""

import pytest

from shared.errors import public_reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[Errno 1094995529] Invalid data found when processing input: '/tmp/job-abc123-x1/source.mp4'",
            "[Errno 1094995529] Invalid data found when processing input: 'source.mp4'",
        ),
        ("cannot open /var/lib/worker/scratch/job-42/source.mov now", "cannot open source.mov now"),
        ('"/home/app/.cache/models/yolo.onnx" missing', '"yolo.onnx" missing'),
    ],
)
def test_absolute_paths_are_cut_to_their_last_part(text: str, expected: str) -> None:
    assert public_reason(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Could not connect to http://127.0.0.1:8333/uploads/abc/source.mp4",
        "s3://bucket/uploads/source.mp4 not found",
        "frame rate 1/2 and aspect 16/9, ratio 30000/1001",
        "a relative path uploads/abc/source.mp4 stays",
        "plain text with no path",
    ],
)
def test_urls_fractions_and_relative_paths_are_untouched(text: str) -> None:
    assert public_reason(text) == text


def test_long_text_is_cut_to_the_limit() -> None:
    assert public_reason("x" * 1000) == "x" * 500
    assert public_reason("abc", limit=2) == "ab"
