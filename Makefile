# One command per habit. Every target installs what it needs into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

.PHONY: build test test-fast demo bench lint typecheck stubtest wheel clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Editable install: builds surestep._core in place from ext/.
$(STAMP): $(PY) pyproject.toml setup.py
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

build: $(STAMP)  ## compile the core (again) after editing ext/
	$(PY) setup.py -q build_ext --inplace

test: build  ## the whole suite (PostgreSQL tests start their own server)
	$(PY) -m pytest

test-fast: build  ## everything but the slow crash tests
	$(PY) -m pytest -m "not slow"

demo: build  ## the order-fulfilment example: crash after charge_card, resume, card charged once
	$(PY) examples/order_fulfillment_demo.py

bench: build  ## pytest-benchmark suite; figures go to benchmarks/RESULTS.md by hand
	$(PY) -m pytest benchmarks -p no:cacheprovider --benchmark-only --benchmark-columns=min,median,mean,rounds

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: build
	$(BIN)/mypy
	$(PY) -m mypy.stubtest surestep._core --allowlist stubtest-allowlist.txt

wheel: $(STAMP)  ## sdist, then a wheel built from it (generated .c stays out)
	rm -rf dist
	$(PY) -m build --sdist
	$(PY) -m pip wheel --no-deps -w dist dist/surestep-*.tar.gz

clean:
	rm -rf build dist wheelhouse src/*.egg-info src/surestep/*.so ext/*.c .pytest_cache .mypy_cache .ruff_cache
