# Development tasks. `make test` is the whole check CI runs (.ci/run).
# Every virtualenv is installed from a lock file with hashes (requirements/*.txt); `make lock`
# re-resolves them from their sources, and devkit/toolchain.py says which lock goes where.
VENV := .venv
PY := $(VENV)/bin/python
SAM := .venv-sam/bin/sam
FN ?=
EVENT ?=
AGENT ?=
AGENT_ID ?=
PORT ?=
UPGRADE ?=
# Python 3.13, as on Lambda: the suite, the tools and `sam build` run on it. A pyenv shim of
# that name may refuse to run, so ask pyenv too.
PY313_DIR ?= $(firstword \
	$(shell python3.13 -c 'import os, sys; print(os.path.dirname(sys.executable))' 2>/dev/null) \
	$(addsuffix /bin,$(shell pyenv prefix 3.13 2>/dev/null | tr ':' ' ')) \
	$(shell ls -d $(HOME)/.pyenv/versions/3.13*/bin 2>/dev/null | sort -rV))
# `$(call toolchain,venv dev)`: build virtualenvs from their locks (a no-op when up to date).
toolchain = $(if $(PY313_DIR),$(PY313_DIR)/python3.13 -m devkit.toolchain $(1),$(error \
	no python3.13 found: install one (e.g. `pyenv install 3.13`) or set PY313_DIR))
export SAM_CLI_TELEMETRY := 0

.DEFAULT_GOAL := help
.PHONY: help venv sam-cli checkov lock test run invoke migrate events agent-check bench dashboard console-shots lint fmt build validate clean

help: ## list the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## /{printf "  %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: ## the development virtualenv (.venv, Python 3.13) from requirements/dev.txt
	$(call toolchain,venv dev)

sam-cli: ## the SAM CLI and its cfn-lint (.venv-sam) from requirements/sam.txt
	$(call toolchain,venv sam)

checkov: venv ## checkov on the templates with .checkov.yaml (.venv-checkov, requirements/checkov.txt: its pins clash)
	$(call toolchain,venv checkov)
	$(PY) -m devkit.check --checkov-only

lock: ## re-resolve every lock from its source, pins kept (UPGRADE="pkg ..." moves those)
	$(call toolchain,lock $(addprefix --upgrade ,$(UPGRADE)))

test: ## what CI runs: services, ruff, mypy, checkov, the whole pytest suite (Python 3.13)
	$(call toolchain,venv bench sam checkov)
	@# Not fatal here: the browser tests ask again and fail with the reason, the rest still runs.
	-$(call toolchain,browser)
	$(PY) -m devkit.check

run: venv ## serve every route of template.yaml on http://127.0.0.1:3000 (PORT=3001 for another)
	$(PY) -m devkit.cli run $(if $(PORT),--port $(PORT))

invoke: venv ## a cold start of the sam build output under awslambdaric: make invoke FN=<Function> EVENT=events/<file>.json
	@[ -n "$(FN)" ] && [ -n "$(EVENT)" ] || { echo "usage: make invoke FN=<Function> EVENT=events/<file>.json" >&2; exit 2; }
	@mkdir -p .local && $(MAKE) --no-print-directory build >.local/sam-build.log 2>&1 || { tail -30 .local/sam-build.log >&2; exit 1; }
	$(PY) -m devkit.rehearsal $(FN) $(EVENT)

migrate: venv ## apply the database migrations
	$(PY) -m devkit.cli migrate

events: venv ## re-sign the signed sample events under events/
	$(PY) -m devkit.cli events

agent-check: venv ## before switching an agent to this stack: make agent-check AGENT=<exported agent JSON> (or AGENT_ID=agent_...)
	@[ -n "$(AGENT)$(AGENT_ID)" ] || { echo "usage: make agent-check AGENT=<exported agent JSON> | AGENT_ID=<agent id>" >&2; exit 2; }
	$(PY) -m devkit.cli agent-check $(if $(AGENT),--agent "$(AGENT)",--agent-id "$(AGENT_ID)")

bench: ## run the benchmarks (adds the bench group to .venv: requirements/bench.txt)
	$(call toolchain,venv bench)
	$(PY) -m devkit.bench

dashboard: ## draw the template's CloudWatch dashboard from a local load run into docs/dashboard.png
	$(call toolchain,venv bench)
	$(PY) -m devkit.dashboard

console-shots: venv ## the staff console's screenshots (inbox and lead, phone and desktop) into docs/
	$(call toolchain,browser)
	$(PY) -m devkit.console_shots

lint: venv ## ruff check, ruff format --check, mypy
	$(PY) -m ruff check . && $(PY) -m ruff format --check .
	$(PY) -m mypy

fmt: venv ## format and autofix
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

build: sam-cli ## sam build (arm64, python3.13, no container)
	PATH="$(PY313_DIR):$$PATH" $(SAM) build

validate: sam-cli ## sam validate --lint and cfn-lint (the SAM CLI's) on every template
	$(SAM) validate --lint
	.venv-sam/bin/cfn-lint template.yaml templates/*.yaml

clean: ## stop the embedded servers; remove build output, local data and caches
	if [ -x $(PY) ]; then $(PY) -m devkit.services --stop; fi
	rm -rf .aws-sam .local .pytest_cache .ruff_cache .mypy_cache .hypothesis && find . -path './.venv*' -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
