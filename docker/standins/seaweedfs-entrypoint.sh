#!/bin/sh
# S3 on :9000 with MinIO's root credentials, data in /data (the minio-data volume). Only S3
# hands out data: fresh JWT keys and gRPC certificates on every start (seaweedfs-security, see
# there) and no filer or master HTTP API. -ip.bind=0.0.0.0 because the other containers and the
# published port reach S3 on the container's address; Compose publishes nothing else.
set -eu
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
python - >/tmp/s3-identities.json <<'PY'
import json, os
print(json.dumps({"identities": [{
    "name": "root",
    "credentials": [{"accessKey": os.environ["MINIO_ROOT_USER"], "secretKey": os.environ["MINIO_ROOT_PASSWORD"]}],
    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
}]}))
PY
sh /usr/local/bin/seaweedfs-security /tmp/seaweedfs-security
exec weed -config_dir=/tmp/seaweedfs-security mini -dir=/data -ip=127.0.0.1 -ip.bind=0.0.0.0 -s3.port=9000 \
	-admin.ui=false -disableHttp -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
	-s3.config=/tmp/s3-identities.json
