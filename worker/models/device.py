"""Device choice: CUDA (NVIDIA or ROCm builds of torch), then Apple MPS, then CPU.

`DEVICE` (settings.device) forces one; `auto` probes. torch is imported only
when a GPU can exist at all (a driver node on Linux, Apple silicon on macOS),
so a CPU worker never pays for importing torch. Nothing here forks.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys

from shared.errors import ErrorCode, ServiceError


def _gpu_possible() -> bool:
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/kfd")


def _torch_device(kind: str) -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    if kind == "cuda":
        return bool(torch.cuda.is_available())  # ROCm builds answer here too
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return False


def choose_device(setting: str = "auto") -> str:
    """'cuda', 'mps' or 'cpu'. A forced device that is not there fails at worker start."""
    setting = (setting or "auto").lower()
    if setting == "cpu":
        return "cpu"
    if setting in ("cuda", "mps"):
        if not _torch_device(setting):
            raise ServiceError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"DEVICE={setting} was asked for, but torch sees no {setting} device here. "
                "Install the torch build for this hardware, or set DEVICE=auto or DEVICE=cpu.",
                {"device": setting},
            )
        return setting
    if _gpu_possible():
        for kind in ("cuda", "mps"):
            if _torch_device(kind):
                return kind
    return "cpu"
