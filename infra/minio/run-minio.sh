#!/usr/bin/env bash
# Run MinIO from its single binary (no Docker), on 127.0.0.1, and create the bucket.
#
#   export MINIO_ROOT_USER=fame-ray-admin MINIO_ROOT_PASSWORD="$(openssl rand -hex 24)"
#   infra/minio/run-minio.sh [DATA_DIR]          # default: ./fame-ray-data/minio
#
# Needs the `minio` server binary on PATH (https://min.io/download); the bucket is created with
# `mc` when present, else with boto3 from the fame-ray environment. Stops with Ctrl-C.
# Environment: MINIO_ADDRESS (default 127.0.0.1:9000), MINIO_CONSOLE_ADDRESS (127.0.0.1:9001),
# FAME_RAY_BUCKET (fame-ray).
set -euo pipefail

: "${MINIO_ROOT_USER:?set MINIO_ROOT_USER}"
: "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD (at least 8 characters)}"
data_dir="${1:-fame-ray-data/minio}"
address="${MINIO_ADDRESS:-127.0.0.1:9000}"
console="${MINIO_CONSOLE_ADDRESS:-127.0.0.1:9001}"
bucket="${FAME_RAY_BUCKET:-fame-ray}"
endpoint="http://${address}"

command -v minio >/dev/null || { echo "error: no 'minio' binary on PATH (https://min.io/download), or use docker-compose.yml" >&2; exit 2; }
mkdir -p "$data_dir"

minio server "$data_dir" --address "$address" --console-address "$console" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 60); do
  curl -fsS "${endpoint}/minio/health/ready" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "${endpoint}/minio/health/ready" >/dev/null || { echo "error: MinIO did not become ready at $endpoint" >&2; exit 1; }

# Percent-encode for the user:password@ part of a URL. Pure bash (builtins only): the value
# never becomes an argument of another process.
urlencode() {
  local LC_ALL=C text="$1" out="" char i
  for ((i = 0; i < ${#text}; i++)); do
    char="${text:i:1}"
    case "$char" in
      [A-Za-z0-9._~-]) out+="$char" ;;
      *) printf -v char '%%%02X' "'$char"; out+="$char" ;;
    esac
  done
  printf '%s' "$out"
}

if command -v mc >/dev/null; then
  # mc takes the alias from MC_HOST_<alias> in its environment: the password never appears on a
  # command line (`ps` shows every process's arguments to every user; an environment is
  # readable only by its owner), and no alias with the password is saved in ~/.mc.
  MC_HOST_fameraylocal="${endpoint%%://*}://$(urlencode "$MINIO_ROOT_USER"):$(urlencode "$MINIO_ROOT_PASSWORD")@${endpoint#*://}"
  export MC_HOST_fameraylocal
  mc mb --ignore-existing "fameraylocal/$bucket"
  mc version enable "fameraylocal/$bucket"
  unset MC_HOST_fameraylocal
else
  AWS_ACCESS_KEY_ID="$MINIO_ROOT_USER" AWS_SECRET_ACCESS_KEY="$MINIO_ROOT_PASSWORD" AWS_REGION=us-east-1 \
  "${PYTHON:-python3}" - "$endpoint" "$bucket" <<'PY'
import sys
import boto3
from botocore.exceptions import ClientError

endpoint, bucket = sys.argv[1], sys.argv[2]
client = boto3.client("s3", endpoint_url=endpoint)
try:
    client.create_bucket(Bucket=bucket)
except ClientError as error:
    if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
        raise
client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
PY
fi

echo "MinIO at $endpoint, bucket s3://$bucket. In the shell that runs fame-ray:"
echo "  export AWS_ENDPOINT_URL=$endpoint AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=\$MINIO_ROOT_USER AWS_SECRET_ACCESS_KEY=\$MINIO_ROOT_PASSWORD"
wait "$server"
