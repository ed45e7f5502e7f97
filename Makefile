# Development tasks. `make test` is the whole check CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
CHECKOV_VENV := .venv-checkov
FN ?=
EVENT ?=
AGENT ?=
AGENT_ID ?=
# sam build needs a python3.13; a pyenv shim of that name may refuse to run, so ask pyenv too.
PY313_DIR ?= $(firstword \
	$(shell python3.13 -c 'import os, sys; print(os.path.dirname(sys.executable))' 2>/dev/null) \
	$(addsuffix /bin,$(shell pyenv prefix 3.13 2>/dev/null | tr ':' ' ')) \
	$(shell ls -d $(HOME)/.pyenv/versions/3.13*/bin 2>/dev/null | sort -rV))
export SAM_CLI_TELEMETRY := 0

.DEFAULT_GOAL := help
.PHONY: help venv sam-cli checkov test run invoke migrate events agent-check bench dashboard lint fmt build validate clean

help: ## list the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## /{printf "  %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.stamp: pyproject.toml layers/leadlookup/requirements.txt
	$(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r layers/leadlookup/requirements.txt --group dev && touch $@

$(SAM_VENV)/.stamp:
	$(PYTHON) -m venv $(SAM_VENV) && $(SAM_VENV)/bin/python -m pip install -q --upgrade pip
	$(SAM_VENV)/bin/python -m pip install -q aws-sam-cli==$(SAM_CLI_VERSION) && touch $@

# checkov's own virtualenv (its pins clash with .venv's); the version is pinned in devkit/check.py.
$(CHECKOV_VENV)/.stamp: $(VENV)/.stamp
	$(PY) -m devkit.check --install-checkov

venv: $(VENV)/.stamp ## the development virtualenv (.venv)

sam-cli: $(SAM_VENV)/.stamp ## the SAM CLI in its own virtualenv (.venv-sam): it pins many libraries

checkov: $(VENV)/.stamp $(CHECKOV_VENV)/.stamp ## checkov on template.yaml (own virtualenv: its pins clash)
	$(PY) -m devkit.check --checkov-only

test: $(VENV)/.stamp $(SAM_VENV)/.stamp $(CHECKOV_VENV)/.stamp ## what CI runs: services, ruff, mypy, checkov, the whole pytest suite
	$(PY) -m devkit.check

run: $(VENV)/.stamp ## serve every route of template.yaml on http://127.0.0.1:3000
	$(PY) -m devkit.cli run

invoke: $(VENV)/.stamp ## a cold start of the sam build output under awslambdaric: make invoke FN=<Function> EVENT=events/<file>.json
	@[ -n "$(FN)" ] && [ -n "$(EVENT)" ] || { echo "usage: make invoke FN=<Function> EVENT=events/<file>.json" >&2; exit 2; }
	@mkdir -p .local && $(MAKE) --no-print-directory build >.local/sam-build.log 2>&1 || { tail -30 .local/sam-build.log >&2; exit 1; }
	$(PY) -m devkit.rehearsal $(FN) $(EVENT)

migrate: $(VENV)/.stamp ## apply the database migrations
	$(PY) -m devkit.cli migrate

events: $(VENV)/.stamp ## re-sign the signed sample events under events/
	$(PY) -m devkit.cli events

agent-check: $(VENV)/.stamp ## before switching an agent to this stack: make agent-check AGENT=<exported agent JSON> (or AGENT_ID=agent_...)
	@[ -n "$(AGENT)$(AGENT_ID)" ] || { echo "usage: make agent-check AGENT=<exported agent JSON> | AGENT_ID=<agent id>" >&2; exit 2; }
	$(PY) -m devkit.cli agent-check $(if $(AGENT),--agent "$(AGENT)",--agent-id "$(AGENT_ID)")

bench: $(VENV)/.stamp ## run the benchmarks
	$(PY) -m devkit.bench

dashboard: $(VENV)/.stamp ## draw the template's CloudWatch dashboard from a local load run into docs/dashboard.png
	$(PY) -m devkit.dashboard

lint: $(VENV)/.stamp ## ruff check, ruff format --check, mypy
	$(PY) -m ruff check . && $(PY) -m ruff format --check .
	$(PY) -m mypy

fmt: $(VENV)/.stamp ## format and autofix
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

build: $(SAM_VENV)/.stamp ## sam build (arm64, python3.13, no container)
	@[ -n "$(PY313_DIR)" ] || { echo "sam build needs python3.13 (e.g. pyenv install 3.13)" >&2; exit 1; }
	PATH="$(PY313_DIR):$$PATH" $(SAM) build

validate: $(VENV)/.stamp $(SAM_VENV)/.stamp ## sam validate --lint and cfn-lint
	$(SAM) validate --lint
	$(VENV)/bin/cfn-lint template.yaml

clean: ## stop the embedded servers; remove build output, local data and caches
	if [ -x $(PY) ]; then $(PY) -m devkit.services --stop; fi
	rm -rf .aws-sam .local .pytest_cache .ruff_cache .mypy_cache .hypothesis && find . -path ./.venv -prune -o -path ./.venv-sam -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
