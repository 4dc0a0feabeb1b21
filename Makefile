# Everything a newcomer runs. Each target installs what it needs first and is safe to repeat.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install up down status demo test lint format bench clean kintone-app smoke

install: $(INSTALLED)

$(INSTALLED): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV) || { apt-get update -q && apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

## The local stack: LiteLLM on PostgreSQL, moto, the kintone emulator, webhook endpoint and workers.
up: install
	$(PY) -m local.stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m local.stack down; fi

status: install
	$(PY) -m local.stack status

## The main job end to end: a record saved in kintone becomes a working key.
demo: install
	$(PY) -m local.demo

## The whole test suite: lint, unit, integration (real local stack) and infrastructure tests.
test: install lint cdk-cli
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## The kintone app from code: `make kintone-app ENV=staging [DRY_RUN=1]` (ENV=local: the local stack's app).
kintone-app: install
	$(PY) -m ops.kintone_app $(if $(filter local,$(ENV)),--local,--env $(ENV)) $(if $(DRY_RUN),--dry-run)

## Smoke test of a deployed environment from its stack outputs and secrets: `make smoke ENV=staging`
## (AWS credentials of the account); ENV=local runs it against `make up`'s stack.
smoke: install
	$(PY) -m ops.smoke --env $(ENV) $(if $(OWNER),--owner $(OWNER))

## Speed on the real local stack; the last line is JSON.
bench: install
	$(PY) -m local.bench

clean: down
	rm -rf .local cdk.out .build

-include Makefile.cdk
