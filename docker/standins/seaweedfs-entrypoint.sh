#!/bin/sh
# S3 on :9000 with MinIO's root credentials, data in /data (the minio-data volume).
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
exec weed mini -dir=/data -ip=127.0.0.1 -ip.bind=0.0.0.0 -s3.port=9000 -admin.ui=false \
	-webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
	-s3.config=/tmp/s3-identities.json
