#!/usr/bin/env bash
# Generates Python, gRPC and typing stubs for protos/*.proto in place
# (module paths rooted at the repository: protos.agent_pb2).
set -euo pipefail
export PATH="$PWD/.venv/bin:$PATH"
cd "$(dirname "$0")/.."
.venv/bin/python -m grpc_tools.protoc -I. \
  --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. protos/*.proto
