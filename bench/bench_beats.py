"""What finding the beats costs per minute of audio (worker/pipeline/beats.py), and how accurate they are.

    python bench/bench_beats.py [--seconds 180] [--repeat 3]
    python bench/bench_beats.py --accuracy

Cost: an H.264 + AAC MP4 of `--seconds` with a drum pattern at 120 BPM (a kick on every beat, a
snare on 2 and 4, hi-hats on the eighths, noise), tiny frames so the audio dominates. Each of
`--repeat` runs times, in CPU seconds of this process: decoding and resampling to 44.1 kHz mono
(`read_audio`), the degara tracker with the backward run over the head (`track` without the
confidence), the multifeature confidence, and the whole `find_beats`. Prints min / median / max
per audio minute, and the peak memory of the process.

--accuracy: 30 click tracks of 20 s (1 kHz clicks, snare-like noise bursts, kick-like thumps;
80-160 BPM; with and without noise) and a few harder signals (quieter off-beat clicks, loud
off-beat hi-hats, a tempo change, human timing jitter, signals with no beat). For each: the tempo,
the share of clicks with a beat within 30 ms, the F-measure at +-70 ms (as mir_eval), and the
median offset of the beats from the clicks; then the median over all clicks of the tracker's own
offset (before BEAT_CORRECTION_S), which is what that constant is set from.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.music import RATE, nearest_offsets, write_music_video
from worker.pipeline import beats


def burst(kind: str, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(round(0.04 * RATE)) / RATE
    if kind == "click":  # 1 kHz, 5 ms decay
        return np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.005)
    if kind == "kick":  # a falling 160 -> 60 Hz thump, 40 ms decay
        return np.sin(2 * np.pi * (60 + 100 * np.exp(-t / 0.01)) * t) * np.exp(-t / 0.04)
    if kind == "snare":  # white noise, 8 ms decay
        return rng.normal(0, 1, len(t)) * np.exp(-t / 0.008)
    if kind == "hat":  # high-passed noise, 10 ms decay
        noise = rng.normal(0, 1, len(t) + 2)
        return np.diff(noise, 2) / 4 * np.exp(-t / 0.01)
    raise ValueError(kind)


def place(out: np.ndarray, times: np.ndarray, sound: np.ndarray, amplitude: float) -> None:
    for at in times:
        i = round(at * RATE)
        if 0 <= i < len(out):
            n = min(len(sound), len(out) - i)
            out[i : i + n] += amplitude * sound[:n]


def track(seconds: float, layers: list[tuple[np.ndarray, str, float]], noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.normal(0, noise, round(seconds * RATE)) if noise else np.zeros(round(seconds * RATE))
    for times, kind, amplitude in layers:
        place(out, times, burst(kind, rng), amplitude)
    return out.astype(np.float32)


def drum_pattern(seconds: float, bpm: float = 120.0) -> np.ndarray:
    beat = 60 / bpm
    on = np.arange(0.4, seconds - 0.1, beat)
    return track(
        seconds,
        [(on, "kick", 0.6), (on[1::2], "snare", 0.3), (np.arange(0.4, seconds - 0.1, beat / 2), "hat", 0.1)],
        noise=0.01,
        seed=0,
    )


def cpu(step: Callable[[], object]) -> float:
    start = time.process_time()
    step()
    return time.process_time() - start


def cost(seconds: float, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "drums.mp4"
        write_music_video(path, drum_pattern(seconds), seconds=seconds, fps=10.0)
        standard = beats._essentia()
        if standard is None:
            sys.exit("essentia does not import here")
        audio = beats.read_audio(path)
        assert not isinstance(audio, str), audio
        minutes = len(audio.samples) / beats.SAMPLE_RATE / 60

        def tracker() -> None:
            ticks, _ = beats._degara(standard, audio.samples)
            beats._settled_start(standard, audio.samples, ticks)

        steps: dict[str, Callable[[], object]] = {
            "decode + resample": lambda: beats.read_audio(path),
            "degara + backward head": tracker,
            "multifeature confidence": lambda: beats._confidence(standard, audio.samples),
            "find_beats (all)": lambda: beats.find_beats(path),
        }
        print(f"{minutes:.1f} min of audio, {repeat} runs, CPU seconds per audio minute (min / median / max):")
        for name, step in steps.items():
            runs = [cpu(step) / minutes for _ in range(repeat)]
            print(f"  {name:26s} {min(runs):6.3f} / {statistics.median(runs):6.3f} / {max(runs):6.3f}")
        result = beats.find_beats(path)
        print(f"  tempo {result.tempo_bpm:.2f} BPM, {len(result.times)} beats, confidence {result.confidence:.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MB (the mono audio is {len(audio.samples) * 4 / 2**20:.0f} MB)")


def score(result: beats.Beats, clicks: np.ndarray) -> str:
    if not result.found:
        return f"skipped: {result.skipped}"
    offsets = nearest_offsets(result.times, clicks)
    recall = np.mean(np.abs(offsets) <= 0.07)
    precision = np.mean(np.abs(nearest_offsets(clicks, result.times)) <= 0.07)
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    hit = np.abs(offsets) <= 0.05
    median = f"{np.median(offsets[hit]) * 1000:6.1f}" if hit.any() else "   n/a"
    within = np.mean(np.abs(offsets) <= 0.03)
    return (
        f"{result.tempo_bpm:6.1f} BPM  conf {result.confidence:4.2f}  within 30 ms {within:4.2f}"
        f"  F {f:4.2f}  median {median} ms"
    )


def accuracy() -> None:
    seconds, rng = 20.0, np.random.default_rng(100)
    raw: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clicks.mp4"

        def run(name: str, audio: np.ndarray, clicks: np.ndarray) -> beats.Beats:
            write_music_video(path, audio, seconds=seconds, fps=10.0)
            result = beats.find_beats(path)
            print(f"  {name:34s} {score(result, clicks)}")
            return result

        print("click tracks, 20 s (beats after the correction):")
        for kind in ("click", "snare", "kick"):
            for bpm in (80, 95, 120, 140, 160):
                for noise in (0.0, 0.02):
                    clicks = np.arange(0.3 + rng.uniform(0, 0.5), seconds - 0.2, 60 / bpm)
                    audio = track(seconds, [(clicks, kind, 0.5)], noise, int(rng.integers(1 << 30)))
                    result = run(f"{kind} {bpm} BPM noise {noise}", audio, clicks)
                    if result.found:
                        offsets = nearest_offsets(result.times, clicks)
                        raw.append(offsets[np.abs(offsets) <= 0.05] - beats.BEAT_CORRECTION_S)
        every = np.concatenate(raw)
        print(
            f"tracker's own offset over all {len(every)} clicks: median {np.median(every) * 1000:.1f} ms, "
            f"mean {every.mean() * 1000:.1f} ms, sd {every.std() * 1000:.1f} ms "
            f"(BEAT_CORRECTION_S = {beats.BEAT_CORRECTION_S * 1000:.0f} ms)"
        )

        print("harder signals, 20 s:")
        on = np.arange(0.5, seconds - 0.2, 0.5)
        for share in (0.2, 0.5, 0.8):
            layers = [(on, "click", 0.5), (on + 0.25, "click", 0.5 * share)]
            run(f"off-beat clicks at {share:.0%}", track(seconds, layers, 0.01, 1), on)
        for amplitude in (0.1, 0.3, 0.5):
            layers = [(on, "kick", 0.6), (on + 0.25, "hat", amplitude)]
            run(f"kicks + off-beat hats {amplitude}", track(seconds, layers, 0.01, 2), on)
        run("drum pattern", drum_pattern(seconds), np.arange(0.4, seconds - 0.1, 0.5))
        change = np.concatenate([np.arange(0.5, 10, 0.6), np.arange(10.0, seconds - 0.2, 60 / 130)])
        run("tempo 100 -> 130 BPM at 10 s", track(seconds, [(change, "click", 0.5)], 0.01, 3), change)
        jittered = on + rng.normal(0, 0.015, len(on))
        run("human timing, sd 15 ms", track(seconds, [(jittered, "click", 0.5)], 0.01, 4), jittered)
        run("white noise", track(seconds, [], 0.05, 5), on)
        syllables = np.cumsum(rng.uniform(0.12, 0.5, 80))
        run("speech-like bursts", track(seconds, [(syllables[syllables < 19.5], "snare", 0.3)], 0.005, 6), on)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--accuracy", action="store_true")
    args = parser.parse_args()
    if args.accuracy:
        accuracy()
    else:
        cost(args.seconds, args.repeat)


if __name__ == "__main__":
    main()
