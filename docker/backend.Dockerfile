# syntax=docker/dockerfile:1.7
# API image: FastAPI + the job contract, no ML packages (requirements-minimal.txt).
# Also runs the one-shot `python -m shared.bucket` and rq-dashboard in Compose.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first: this layer is reused until the requirements change.
COPY requirements-minimal.txt ./
RUN pip install --no-cache-dir -r requirements-minimal.txt

COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/healthcheck
COPY shared/ shared/
COPY backend/ backend/

USER 10001:10001
EXPOSE 8000
CMD ["uvicorn", "backend.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
