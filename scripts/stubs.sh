#!/usr/bin/env bash
# Generate routeguide's gRPC stubs from its .proto when missing or older (set-up and Binder's
# postBuild). Usage: scripts/stubs.sh PYTHON
set -euo pipefail
cd "$(dirname "$0")/.."
PROTO=stack/labstack/routeguide.proto
STUB=stack/labstack/routeguide_pb2.py
if [ ! -f "$STUB" ] || [ "$PROTO" -nt "$STUB" ]; then
  echo "generating gRPC stubs from $PROTO"
  "$1" -m grpc_tools.protoc -I stack --python_out=stack --grpc_python_out=stack \
    --pyi_out=stack "$PROTO"
fi
