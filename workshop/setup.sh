#!/usr/bin/env bash
# The workshop hub's parts, beside the lab's own set-up: JupyterHub and its idle culler from
# PyPI into the lab's venv, configurable-http-proxy from npm into workshop/node_modules.
# Idempotent. Usage: workshop/setup.sh [PYTHON]   (default: the venv of `make setup`)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-.venv/bin/python}
"$PYTHON" -m pip install --quiet -r workshop/requirements.txt
if [ ! -x workshop/node_modules/.bin/configurable-http-proxy ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "workshop: npm is missing; install Node.js with one of: sudo apt-get install -y npm" \
         "(Debian / Ubuntu), brew install node (macOS), conda install -c conda-forge nodejs" >&2
    exit 1
  fi
  echo "workshop: installing configurable-http-proxy from npm"
  npm install --no-save --no-audit --no-fund --loglevel=error --prefix workshop \
    configurable-http-proxy@5.3.0
fi
echo "workshop: ok (jupyterhub $("$PYTHON" -m jupyterhub --version)," \
     "configurable-http-proxy $(workshop/node_modules/.bin/configurable-http-proxy --version))"
