"""The look policy: how each frame is searched, for close-ups, wide shots and empty stages (no model)."""

from __future__ import annotations

import numpy as np

from worker.pipeline.plan import LookPolicy, SearchConfig, input_pixels, overlapping_groups, plan_crops


def boxes_of(heights: list[float], width: float = 0.4) -> np.ndarray:
    """Standing dancers of the given heights, side by side."""
    return np.array([[100 + 250 * i, 300, 100 + 250 * i + width * h, 300 + h] for i, h in enumerate(heights)])


def run(policy: LookPolicy, frames: int, boxes: np.ndarray) -> list[str]:
    return [policy.next(i, boxes).kind for i in range(frames)]


def test_close_up_searches_the_small_whole_frame_and_looks_carefully_every_two_seconds():
    policy = LookPolicy(1280, 720, fps=30)
    kinds = run(policy, 150, boxes_of([520, 480]))
    assert kinds[0] == "careful"
    assert [i for i, k in enumerate(kinds) if k == "careful"] == [0, 60, 120]
    assert set(kinds) == {"careful", "frame"}
    assert policy.next(150, boxes_of([520, 480])).imgsz == 384
    summary = policy.summary()
    assert summary["frames"] == {"careful": 3, "frame": 148, "crops": 0}  # 151 frames asked
    assert summary["frame_imgsz"] == [384] and summary["smallest_dancer_px"] == 480
    assert "480 px" in summary["why"]


def test_wide_shot_works_from_crops_and_looks_for_newcomers_twice_a_second():
    policy = LookPolicy(1280, 720, fps=30)
    heights = [84, 96, 118, 140, 168, 200]
    kinds = run(policy, 60, boxes_of(heights, width=0.3))
    assert [i for i, k in enumerate(kinds) if k == "careful"] == [0, 15, 30, 45]
    assert kinds.count("crops") == 56
    assert policy.next(60, boxes_of(heights, width=0.3)).kind == "careful"
    look = policy.next(61, boxes_of(heights, width=0.3))
    assert look.kind == "crops" and len(look.crops) == 6 and {crop.imgsz for crop in look.crops} == {192}
    # The whole frame would have needed the careful size for the 84 px dancer.
    assert policy.frame_imgsz(84) == 1280
    assert "84 px" in policy.summary()["why"] and "crop" in policy.summary()["why"]


def test_a_crowd_of_small_dancers_is_cheaper_on_the_whole_frame():
    policy = LookPolicy(1280, 720, fps=30)
    crowd = boxes_of([150] * 40, width=0.3)
    kinds = run(policy, 30, crowd)
    assert "crops" not in kinds
    assert policy.next(30, crowd).imgsz >= 640


def test_empty_stage_looks_carefully_now_and_then():
    policy = LookPolicy(1920, 1080, fps=25)
    kinds = run(policy, 120, np.zeros((0, 4)))
    assert [i for i, k in enumerate(kinds) if k == "careful"] == [0, 50, 100]
    assert policy.summary()["smallest_dancer_px"] is None


def test_no_flip_flopping_near_the_break_even_point():
    policy = LookPolicy(1280, 720, fps=30)
    frame_cost, crops_cost = policy.costs(policy.frame_imgsz(300), plan_crops(boxes_of([300, 310, 305]), policy.config))
    kinds = []
    for i in range(90):  # dancer sizes wobble around one value
        kinds.append(policy.next(i, boxes_of([300 + 6 * np.sin(i), 310, 305])).kind)
    switches = sum(a != b for a, b in zip(kinds[1:], kinds[:-1], strict=True) if "careful" not in (a, b))
    assert switches == 0, (frame_cost, crops_cost, kinds)


def test_a_lone_dancer_gets_a_square_crop_around_their_box():
    config = SearchConfig()
    (crop,) = plan_crops(np.array([[100.0, 200.0, 140.0, 300.0]]), config)
    np.testing.assert_allclose(crop.region, [40.0, 170.0, 200.0, 330.0])  # 1.6x the long side, centred
    assert crop.imgsz == 192
    (tiny,) = plan_crops(np.array([[0.0, 0.0, 10.0, 20.0]]), config)
    np.testing.assert_allclose(tiny.region[2:] - tiny.region[:2], [48.0, 48.0])


def test_overlapping_dancers_share_one_crop_that_keeps_the_smallest_big_enough():
    config = SearchConfig()
    # A far dancer (140 px) half behind a nearer one (168 px), and a third standing apart.
    boxes = np.array([[596.0, 420.0, 640.0, 560.0], [596.0, 452.0, 662.0, 620.0], [100.0, 400.0, 150.0, 540.0]])
    assert sorted(map(sorted, overlapping_groups(boxes))) == [[0, 1], [2]]
    pair, alone = sorted(plan_crops(boxes, config), key=lambda crop: -crop.region[0])
    x1, y1, x2, y2 = pair.region
    assert x1 <= 596 and y1 <= 420 and x2 >= 662 and y2 >= 620 and np.isclose(x2 - x1, y2 - y1)
    # The union is 200 px tall and its smallest member 140 px: that member is seen at 192 / 1.6 = 120 px.
    assert pair.imgsz == 288 and alone.imgsz == 192
    # Dancers only near each other (their boxes apart) keep their own crops.
    assert len(plan_crops(np.array([[100.0, 400.0, 150.0, 540.0], [175.0, 400.0, 225.0, 540.0]]), config)) == 2


def test_input_pixels_follow_the_letterbox():
    assert input_pixels(1280, 720, 384) == 384 * 224
    assert input_pixels(1280, 720, 1280) == 1280 * 736
    assert input_pixels(720, 1280, 640) == 384 * 640
