# One command per habit. Every target installs what it needs into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

.PHONY: build test test-lmdb-commit test-fast demo bench lint typecheck stubtest wheel wheel-check fuzz screenshot clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# What building the core needs (pyproject.toml's build-system requires), installed in .venv.
BUILD_REQUIRES := $(shell sed -n 's/^requires = \[\(.*\)\]/\1/p' pyproject.toml | tr -d '",')
RUNTIME := $(VENV)/.runtime

# The runtime alone (what the demo needs): an editable install, which compiles the core in
# place once, with the build requirements in an isolated environment.
$(RUNTIME): $(PY) pyproject.toml setup.py src/surestep/_version.py
	$(PY) -m pip install -q -e .
	touch $(RUNTIME)

# Everything for development: an editable install, which compiles the core in place (with
# .venv's Cython). The core is compiled again only once its sources change.
CORE := $(VENV)/.core
CORE_SOURCES := setup.py $(wildcard ext/*.pyx ext/*.pxd ext/*.pxi ext/lmdb/*.c ext/lmdb/*.h)
$(STAMP): $(PY) pyproject.toml setup.py src/surestep/_version.py
	$(PY) -m pip install -q $(foreach r,$(BUILD_REQUIRES),'$(r)')
	$(PY) -m pip install -q --no-build-isolation -e '.[dev]'
	touch $(STAMP) $(RUNTIME) $(CORE)

$(CORE): $(CORE_SOURCES)
	$(PY) setup.py -q build_ext --inplace
	touch $(CORE)

# A second make, which sees the times the install left: the core it compiled is up to date.
build: $(STAMP)  ## install for development; compile the core again after editing ext/
	@$(MAKE) --no-print-directory $(CORE)

# Test processes (pytest-xdist): 2 suits a 2-core machine; each starts its own PostgreSQL
# server on a free port. TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= 2

# The whole suite on every backend (PostgreSQL tests start their own server), LMDB stores
# in their default commit mode (the commit log); then the LMDB store's own tests, the
# crash, torture, workers' and steps' tests with commit="lmdb" (all: make test-lmdb-commit).
LMDB_COMMIT_TESTS := tests/store tests/test_crash.py tests/test_torture.py tests/test_workers.py tests/test_steps.py

test: build  ## the whole suite, then the LMDB store's, crash and worker tests with commit="lmdb"
	$(PY) -m pytest -n $(TEST_WORKERS)
	SURESTEP_SKIP_POSTGRES=1 $(PY) -m pytest -n $(TEST_WORKERS) --lmdb-commit=lmdb -k "not postgres" $(LMDB_COMMIT_TESTS)

test-lmdb-commit: build  ## the LMDB tests with commit="lmdb" (the default is the commit log)
	SURESTEP_SKIP_POSTGRES=1 $(PY) -m pytest -n $(TEST_WORKERS) --lmdb-commit=lmdb -k "not postgres"

test-fast: build  ## everything but the slow crash tests
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not slow"

demo: $(RUNTIME)  ## the order-fulfilment example: crash after charge_card, resume, card charged once
	$(PY) examples/order_fulfillment_demo.py

bench: build  ## pytest-benchmark suite, then a short open-loop latency ladder; figures go to benchmarks/RESULTS.md by hand
	$(PY) -m pytest benchmarks -p no:cacheprovider --benchmark-only --benchmark-columns=min,median,mean,rounds
	$(PY) benchmarks/latency.py --rates 100,1000,5000 --duration 3

screenshot: build  ## PNGs of the dashboard over real runs -> build/screenshots/ (needs chromium)
	$(PY) tests/e2e/screenshots.py build/screenshots

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples fuzz
	$(BIN)/ruff format --check src tests benchmarks examples fuzz

typecheck: build
	$(BIN)/mypy
	$(PY) -m mypy.stubtest surestep._core surestep._lmdb --allowlist stubtest-allowlist.txt

wheel: $(STAMP)  ## sdist, then a wheel built from that sdist; checks what each holds
	rm -rf dist
	$(PY) -m build --outdir dist .
	SURESTEP_DIST=dist $(PY) -m pytest tests/test_packaging.py -p no:cacheprovider -q

# The wheel in a fresh virtual environment, tested from an empty directory with the sdist's
# tests (what cibuildwheel does on each platform), then auditwheel's view of it on Linux.
wheel-check: wheel  ## install the wheel in a fresh venv and run the sdist's tests against it
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PY) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q "$$(ls dist/surestep-*.whl)[test]"; \
	mkdir "$$tmp/sdist" "$$tmp/cwd"; tar -xzf dist/surestep-*.tar.gz -C "$$tmp/sdist"; \
	cd "$$tmp/cwd"; \
	SURESTEP_SKIP_POSTGRES=1 SURESTEP_SKIP_BROWSER=1 SURESTEP_TEST_INSTALLED=1 \
		"$$tmp/venv/bin/python" -m pytest \
		"$$tmp"/sdist/surestep-*/tests -p no:cacheprovider -m "not slow" -q
	@if [ "$$(uname -s)" = Linux ]; then \
		$(PY) -m pip install -q auditwheel && $(BIN)/auditwheel show dist/surestep-*.whl; fi

# Coverage-guided fuzzing (atheris) of the record codec and the replay index, against an
# ASan+UBSan build of the core made in build/fuzz (the in-place build is left alone); with
# clang + compiler-rt (Debian: clang-14 libclang-rt-14-dev) libFuzzer also sees the core's C
# coverage. fuzz/run.sh says how. FUZZ_RUNS=N inputs per harness, shared by FUZZ_JOBS
# processes on one corpus (the 1M-input runs of the replay harness used FUZZ_JOBS=2).
FUZZ_RUNS ?= 1000000
FUZZ_JOBS ?= 1
fuzz: $(STAMP)  ## fuzz the core under ASan+UBSan, FUZZ_RUNS inputs per harness (default 1M)
	$(PY) -m pip install -q 'atheris>=2.3'  # the [fuzz] extra, without rebuilding the tree
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_JOBS=$(FUZZ_JOBS) PYTHON=$(PY) sh fuzz/run.sh

clean:
	rm -rf build dist wheelhouse src/*.egg-info src/surestep/*.so ext/*.c .pytest_cache .mypy_cache .ruff_cache
