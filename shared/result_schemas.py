"""The versioned JSON schemas of the JSON results (poses, metrics, beats, comparison), and their validation."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

# Each document's version: the minor number grows when fields are added, the major when one changes meaning.
POSES_VERSION = "1.1"  # 1.1: generator.detection and .pose_presence; keypoints clamped into the frame
METRICS_VERSION = "1.1"  # 1.1: music, synchrony and each dancer's on_beat
BEATS_VERSION = "1.0"
COMPARISON_VERSION = "1.0"
SCHEMA_DIR = Path(__file__).parent / "schemas"


@lru_cache
def load_schema(name: str) -> dict[str, Any]:
    """`name` is "poses", "metrics", "beats" or "comparison"."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    return schema


def validate(name: str, document: dict[str, Any]) -> None:
    """Raise `jsonschema.ValidationError` when `document` breaks the schema."""
    import jsonschema  # imported here: only the export stage and tests validate

    jsonschema.Draft202012Validator(load_schema(name)).validate(document)
