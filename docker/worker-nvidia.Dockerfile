# Worker for the `nvidia` profile. The CUDA base image carries the settings the
# NVIDIA container toolkit reads (NVIDIA_VISIBLE_DEVICES, driver capabilities,
# and NVIDIA_REQUIRE_CUDA, so a too-old host driver is refused with a clear
# message). The `base` flavour is enough: PyTorch's Linux wheels on PyPI are
# CUDA 13 builds that bring their own CUDA libraries (cuda-toolkit, cudnn,
# nccl wheels), so the image does not carry a second copy. Host driver: R580+.
# CUDA_IMAGE: a registry mirror's copy on sites that cannot pull from Docker Hub.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_VERSION=2.15.0
ARG TORCHVISION_VERSION=0.29.2
# PyPI's torch is the CUDA 13 build. For an older driver, use a CUDA 12 index
# of download.pytorch.org (e.g. .../whl/cu126) with a torch release it carries.
ARG TORCH_INDEX_URL=https://pypi.org/simple

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MODELS_DIR=/opt/models \
    DEVICE=cuda \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# Ubuntu 24.04's Python (3.12) in a venv (the system one is externally managed).
# Versions come from the pinned base image's release; pinning each apt
# package as well would break on every Ubuntu point update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv "${VIRTUAL_ENV}" \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

WORKDIR /app
COPY docker/with-extra-ca /usr/local/bin/with-extra-ca

# 1. PyTorch with CUDA, held through step 2 by a constraints file
#    and checked again after it.
RUN --mount=type=secret,id=extra_ca_certs \
    with-extra-ca pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && printf 'torch==%s\ntorchvision==%s\n' "${TORCH_VERSION}" "${TORCHVISION_VERSION}" > /opt/torch-constraints.txt \
 && python -c "import torch; assert torch.version.cuda, torch.__version__"

# 2. The rest of the ML stack.
COPY requirements-api.txt requirements-minimal.txt requirements-cpu.txt requirements-gpu.txt ./
RUN --mount=type=secret,id=extra_ca_certs \
    with-extra-ca pip install --no-cache-dir -c /opt/torch-constraints.txt -r requirements-gpu.txt \
 && python -c "import torch; assert torch.version.cuda, torch.__version__"

# 3. Code, then the model weights (no GPU needed at build time).
COPY docker/healthcheck.py /usr/local/bin/healthcheck
COPY shared/ shared/
COPY worker/ worker/
RUN --mount=type=secret,id=extra_ca_certs \
    with-extra-ca python -m worker.models.prepare && chmod -R a+rX "${MODELS_DIR}"

USER 10001:10001
CMD ["python", "-m", "worker"]
