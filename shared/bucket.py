"""Create the bucket and its lifecycle rule: `python -m shared.bucket`.

Run once when a stack starts (manage.sh, the Compose one-shot service). The rule
aborts multipart uploads left unfinished for a day, the safety net behind the
API's own abort when an upload breaks off.
"""

from __future__ import annotations

import sys
import time

from botocore.exceptions import ClientError

from shared.errors import ServiceError
from shared.settings import get_settings
from shared.storage import Storage

LIFECYCLE = {
    "Rules": [
        {
            "ID": "abort-abandoned-multipart-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    ]
}


def ensure_bucket(storage: Storage, *, wait_seconds: float = 30) -> None:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            storage.ensure_bucket()
            break
        except ServiceError as exc:
            # Wait for a server that is still starting; a refusal (bad name, credentials) is final.
            if "s3_code" in exc.details or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        storage.client.put_bucket_lifecycle_configuration(Bucket=storage.bucket, LifecycleConfiguration=LIFECYCLE)
    except ClientError as exc:
        # Not every S3 server implements lifecycle rules (SeaweedFS does only in part).
        print(f"lifecycle rule not set: {exc.response.get('Error', {}).get('Code')}", file=sys.stderr)


def main() -> int:
    storage = Storage(get_settings())
    try:
        ensure_bucket(storage)
    except ServiceError as exc:
        print(f"{exc.code.value}: {exc.message} {exc.details}", file=sys.stderr)
        return 1
    print(f"bucket {storage.bucket} ready at {storage.settings.s3_endpoint_url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
