#!/usr/bin/env bash
# Regenerates the protobuf code into a scratch tree and fails on any difference from
# what is committed in protos/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
ls protos/*.proto >/dev/null 2>&1 || { echo "no .proto files"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/protos"
cp protos/*.proto "$tmp/protos/"
( cd "$tmp" && "$OLDPWD/.venv/bin/python" -m grpc_tools.protoc -I. \
    --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. protos/*.proto )
status=0
for f in "$tmp"/protos/*_pb2*; do
  name=$(basename "$f")
  if ! diff -q "$f" "protos/$name" >/dev/null 2>&1; then
    echo "protos/$name is stale: run 'make protos'"; status=1
  fi
done
exit $status
