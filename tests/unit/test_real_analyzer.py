"""Parts of the real analyzer that need no model: the start-up check and the decode prefetch."""

from __future__ import annotations

import pytest

from shared.errors import ErrorCode, ServiceError


def test_missing_models_fail_at_start_saying_how_to_fix(tmp_path):
    from worker.models.runtime import load_models

    with pytest.raises(ServiceError) as caught:
        load_models("cpu", tmp_path / "nothing-here")
    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE
    assert "python -m worker.models.prepare" in caught.value.message


def test_prefetch_closes_the_decoder_when_the_consumer_stops():
    from worker.analysis.real import prefetch

    closed = []

    def frames():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    for item in prefetch(frames()):
        if item == 3:
            break
    assert closed == [True]
    assert list(prefetch(iter(range(5)))) == [0, 1, 2, 3, 4]
