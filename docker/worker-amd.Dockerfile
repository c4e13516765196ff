# Worker for the `amd` profile: the ROCm build of PyTorch. Its wheels bundle the
# ROCm user-space libraries (HIP runtime, rocBLAS, MIOpen), so a slim Python
# base is enough; the host needs the amdgpu kernel driver, and Compose passes
# /dev/kfd and /dev/dri in. ROCm's PyTorch answers to the "cuda" device name.
# PYTHON_IMAGE: a registry mirror or a local stand-in (scripts/docker/standins.sh).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG TORCH_VERSION=2.15.0
ARG TORCHVISION_VERSION=0.29.2
# The ROCm release must be one that download.pytorch.org builds this torch for
# (see the install selector on pytorch.org) and that the host's driver supports.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/rocm7.2

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELS_DIR=/opt/models \
    DEVICE=cuda

# Debian's base image has a `video` group but no `render` group; Compose adds
# the host's group ids (VIDEO_GID/RENDER_GID) and falls back to these names.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
 && (getent group render >/dev/null || groupadd --system render)

WORKDIR /app
COPY docker/with-extra-ca /usr/local/bin/with-extra-ca

# 1. PyTorch for ROCm, held through step 2 by a constraints file
#    and checked again after it.
RUN --mount=type=secret,id=extra_ca_certs \
    with-extra-ca pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && printf 'torch==%s\ntorchvision==%s\n' "${TORCH_VERSION}" "${TORCHVISION_VERSION}" > /opt/torch-constraints.txt \
 && python -c "import torch; assert torch.version.hip, torch.__version__"

# 2. The rest of the ML stack.
COPY requirements-api.txt requirements-minimal.txt requirements-cpu.txt requirements-gpu.txt ./
RUN --mount=type=secret,id=extra_ca_certs \
    with-extra-ca pip install --no-cache-dir -c /opt/torch-constraints.txt -r requirements-gpu.txt \
 && python -c "import torch; assert torch.version.hip, torch.__version__"

# 3. Code, then the model weights (no GPU needed at build time).
COPY docker/healthcheck.py /usr/local/bin/healthcheck
COPY shared/ shared/
COPY worker/ worker/
RUN --mount=type=secret,id=extra_ca_certs \
    with-extra-ca python -m worker.models.prepare && chmod -R a+rX "${MODELS_DIR}"

USER 10001:10001
CMD ["python", "-m", "worker"]
