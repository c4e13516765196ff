# Stand-in for python:3.11-slim-bookworm, for machines that cannot pull from a registry.
# Built by scripts/docker/standins.sh on a Debian bookworm base made with debootstrap
# (BASE_IMAGE). Debian's Python 3.11 in a venv at /usr/local, so `python`, `pip` and
# /usr/local/bin behave as in the official image.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}

ENV LANG=C.UTF-8 \
    PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin

# The base's release pins the versions (as the official image's does).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && python3.11 -m venv /usr/local \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/* /usr/share/locale/*

CMD ["python3"]
