# The two commands that matter:  make lab   and   make test
VENV := .venv
BIN := $(VENV)/bin
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: setup lab test up down status bench lint clean workshop audit book book-serve

setup:  ## create the venv, install everything, generate stubs (idempotent)
	@bash scripts/setup.sh

# JupyterLab: opens on the tour; settings (no news prompt) from the repo, not the user's home;
# the venv's bin on PATH, so its terminals and kernels find `labkit`; JUPYTER_CONFIG_PATH:
# the repo's jupyter/ folder, whose jupyter_server_config.py serves every UI of the lab
# through the server (binder/start, used by Binder and the workshop hub, sets the same)
LAB_OPTIONS := --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
  --LabApp.default_url=/lab/tree/00-tour.ipynb \
  --LabApp.app_settings_dir=$(CURDIR)/jupyter/lab-settings $(ALLOW_ROOT)

lab: setup  ## start the stack and open JupyterLab on the tour notebook; stops the stack on exit
	@$(BIN)/labkit up
	@trap '$(BIN)/labkit down' EXIT; \
	  PATH="$(CURDIR)/$(BIN):$$PATH" JUPYTER_CONFIG_PATH="$(CURDIR)/jupyter" \
	  $(BIN)/jupyter lab $(LAB_OPTIONS)

test: setup  ## run the whole suite: unit, live-stack integration, every notebook; then the site
	@$(BIN)/python -m pytest && $(BIN)/python -m book.build

# the course site (book/build.py): the notebooks as `make test` last executed them, with their
# outputs, as static HTML in build/book/html; its internal links are checked
book: setup  ## build the course site from tests/output/ (run `make test` first)
	@$(BIN)/python -m book.build

# another port for a second checkout's site: make book-serve BOOK_PORT=8301
BOOK_PORT ?= 8300
book-serve:  ## serve the course site on http://127.0.0.1:$(BOOK_PORT) (loopback only)
	@test -f build/book/html/index.html || { echo "no site in build/book/html: run make book"; exit 1; }
	@$(BIN)/python -m http.server $(BOOK_PORT) --bind 127.0.0.1 --directory build/book/html

up: setup
	@$(BIN)/labkit up

down:
	@if [ -x $(BIN)/labkit ]; then $(BIN)/labkit down; fi

status:
	@$(BIN)/labkit status

bench: setup  ## print the benchmark figures (starts and stops its own stack), then one table
	@rm -f build/bench/results.jsonl
	@$(BIN)/python bench/startup.py
	@$(BIN)/python bench/gateway_overhead.py
	@$(BIN)/python bench/failover.py
	@$(BIN)/python bench/loadgen.py
	@$(BIN)/python bench/resilience.py
	@$(BIN)/python bench/telemetry.py
	@$(BIN)/python bench/deploy.py
	@$(BIN)/python bench/labs.py
	@$(BIN)/python bench/chaos.py
	@$(BIN)/python bench/limits.py
	@$(BIN)/python bench/autoscale.py
	@$(BIN)/python bench/summary.py

workshop: setup  ## a JupyterHub for a workshop on this machine (workshop/README.md); not as root
	@bash workshop/setup.sh
	@$(BIN)/jupyterhub -f workshop/jupyterhub_config.py

lint: setup  ## ruff and mypy (configured in pyproject.toml); tests/test_lint.py runs both too
	@$(BIN)/ruff check .
	@$(BIN)/mypy

# bandit, pip-audit, a CycloneDX SBOM (build/audit/) and the generated configs' checks, in
# parallel; fails on a high finding that .audit-baseline.json does not accept (labkit.audit)
audit: setup  ## the security pipeline: one table of findings; exit 1 on a new high finding
	@$(BIN)/python -m labkit.audit

clean: down
	rm -rf .lab .lab-test build *.egg-info
