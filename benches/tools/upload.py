"""Upload a folder to an S3-compatible bucket under a prefix (path-style, as Garage and MinIO want).

    python3 benches/tools/upload.py FOLDER s3://BUCKET/PREFIX
Credentials, endpoint and region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT
and AWS_REGION, as lifemap reads them.
"""
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config


def main() -> None:
    folder, target = sys.argv[1], sys.argv[2]
    bucket, _, prefix = target.removeprefix("s3://").partition("/")
    client = boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}),
    )
    files = [
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if not name.startswith(".")
    ]

    def put(path: str) -> None:
        key = "/".join(p for p in (prefix, os.path.relpath(path, folder)) if p)
        client.upload_file(path, bucket, key)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, files))
    print(f"uploaded {len(files)} files to {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
