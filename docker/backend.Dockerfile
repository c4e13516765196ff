# API image: FastAPI + the job contract, no video or ML packages (requirements-api.txt).
# Two targets on one base, so each container advertises only its own port:
#   api           (default) the API; also runs the one-shot `python -m shared.bucket` in Compose
#   rq-dashboard  the queue monitor, from the same layers
# PYTHON_IMAGE: a registry mirror or a local stand-in (scripts/docker/standins.sh) on sites
# that cannot pull python:3.11-slim-bookworm.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first: this layer is reused until the requirements change.
COPY docker/with-extra-ca /usr/local/bin/with-extra-ca
COPY requirements-api.txt ./
RUN --mount=type=secret,id=extra_ca_certs \
    with-extra-ca pip install --no-cache-dir -r requirements-api.txt

# healthcheck.py is executable in git, so no COPY --chmod (which the classic builder rejects).
COPY docker/healthcheck.py /usr/local/bin/healthcheck
COPY shared/ shared/
USER 10001:10001

# ---------------------------------------------------------------------------------------------
FROM base AS rq-dashboard
# rq-dashboard behind its login, same-origin and Host checks; none of the API's code.
COPY backend/__init__.py backend/dashboard.py backend/
EXPOSE 9181
CMD ["python", "-m", "backend.dashboard", "--host", "0.0.0.0", "--port", "9181"]

# ---------------------------------------------------------------------------------------------
FROM base AS api
COPY backend/ backend/
EXPOSE 8000
CMD ["python", "-m", "backend", "--host", "0.0.0.0", "--port", "8000"]
