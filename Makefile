# The two commands a newcomer needs: `make up` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: up test setup system agent-base venv ui ui-check lint typecheck protos check-protos pytest bench screenshot clean

up: system venv ui ## start a control plane and a local agent on this machine
	$(VENV)/bin/encedeus up

test: setup lint ui-check typecheck check-protos pytest ## everything CI runs

setup: system venv ui agent-base

agent-base: system ## the Debian base image the agent's image builds on (debootstrap once per machine)
	@bash scripts/agent-base-image.sh

ui: venv ## build the web UI into controlplane/ui_dist (skipped when its sources did not change)
	@bash scripts/build-ui.sh

ui-check: ui ## svelte-check, tsc and the UI's Vitest component tests
	@bash scripts/build-ui.sh --check

system:
	@bash scripts/setup-system.sh

venv:
	@bash scripts/setup-venv.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: venv
	$(VENV)/bin/mypy agent controlplane common tests $(wildcard bench/*.py)

protos: venv ## regenerate protos/*_pb2*.py from protos/*.proto
	@bash scripts/gen-protos.sh protos

check-protos: venv ## fail when the committed generated code differs from a fresh generation
	@bash scripts/check-protos.sh

pytest: setup ## the suite: pure tests in parallel, then docker and e2e ones serially (PYTEST_ARGS: one serial run of a selection)
	@bash scripts/run-tests.sh $(PYTEST_ARGS)

screenshot: setup ## regenerate docs/img/server.png, the README's picture, from the browser walk of every page
	mkdir -p docs/img
	ENCEDEUS_README_SCREENSHOT=$(CURDIR)/docs/img/server.png $(PY) -m pytest tests/e2e/test_web_ui_pages.py -q

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
