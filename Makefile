# Two entry points: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use: torch==2.13.0 (the local CPU wheel) first, then giqa with extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.giqa-installed
EXTRAS := models,bench,train,scale,dev
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0

.PHONY: test test-compat demo bench bench-compare install clean typecheck

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --benchmark-disable $(PYTEST_ARGS)

# `make demo` stays offline (the `small` checkpoints if cached, else tiny random-weight models);
# `make demo PRESET=small` downloads the small checkpoints once (about 3.5 GB, said first) and runs with them.
PRESET ?=
demo: $(STAMP)
ifeq ($(PRESET),small)
	HF_HUB_OFFLINE=0 TRANSFORMERS_OFFLINE=0 $(PY) examples/demo.py --out demo_out --preset small --download
else
	$(PY) examples/demo.py --out demo_out $(if $(PRESET),--preset $(PRESET),)
endif

# The lowest versions pyproject.toml declares (.ci/compat-constraints.txt) in a second venv, running
# the models, pipeline and train tests; then a venv with only giqa[bench] scores the example bench.
COMPAT_VENV := .venv-compat
COMPAT_PY := $(COMPAT_VENV)/bin/python
COMPAT_STAMP := $(COMPAT_VENV)/.giqa-installed
BENCH_VENV := .venv-bench
$(COMPAT_STAMP): pyproject.toml .ci/compat-constraints.txt
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install -q --upgrade pip wheel setuptools
	$(COMPAT_PY) -m pip install -q torch==2.13.0
	$(COMPAT_PY) -m pip install -q -c .ci/compat-constraints.txt -e ".[$(EXTRAS)]"
	touch $(COMPAT_STAMP)
$(BENCH_VENV)/.giqa-installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q -e ".[bench]"
	touch $@

test-compat: $(COMPAT_STAMP) $(BENCH_VENV)/.giqa-installed
	$(COMPAT_PY) -c "import transformers, peft, accelerate, torch; print('test-compat: transformers', transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__, 'torch', torch.__version__)"
	$(COMPAT_PY) -m pytest -q -p no:cacheprovider --benchmark-disable tests/test_models_*.py tests/test_pipeline_*.py tests/test_train_*.py $(PYTEST_ARGS)
	cd /tmp && $(CURDIR)/$(BENCH_VENV)/bin/giqa bench score $(CURDIR)/examples/bench/predictions.giqa.jsonl --gt $(CURDIR)/examples/bench/bench.jsonl --out $(CURDIR)/$(BENCH_VENV)/report
	@echo "test-compat: giqa[bench] alone scored the example bench"

# CPU benchmarks: pytest-benchmark suites (benchmarks/conftest.py), giqa and its peers in one group
# per case, so each table gives every contender's ratio to the fastest. `make bench` saves the run
# in .benchmarks/; `make bench-compare` runs them again and compares with the last saved run
# (BENCH_FAIL=median:25% fails on such a regression). Rounds are bounded per benchmark
# (BENCH_ARGS="--bench-rounds 1" for a smoke run; BENCH_ARGS="-k iou" selects). Scripts listed in
# BENCH_SCRIPTS (none now) run after them; bench_scoring.py and bench_ptb.py are suites whose
# script entry points print the full-size tables of benchmarks/results/bench.md; the GPU
# benchmarks (bench_paper_scale.py, bench_train_gpu.py) stay scripts run by hand.
# benchmarks/RESULTS.md keeps the recorded tables and their commands.
BENCH_SUITES := $(patsubst %,benchmarks/bench_%.py,geometry text pipeline detection train scaling scoring ptb)
BENCH_SCRIPTS :=
BENCH_ARGS ?=
BENCH_FAIL ?=
BENCH_PYTEST = $(PY) -m pytest $(BENCH_SUITES) -p no:cacheprovider --benchmark-only \
	--benchmark-storage=file://$(CURDIR)/.benchmarks --benchmark-columns=min,median,max,rounds,iterations
bench: $(STAMP)
	$(BENCH_PYTEST) --benchmark-save=giqa $(BENCH_ARGS)
	@for b in $(BENCH_SCRIPTS); do echo "== benchmarks/bench_$$b.py"; $(PY) benchmarks/bench_$$b.py || exit 1; done

bench-compare: $(STAMP)
	$(BENCH_PYTEST) --benchmark-compare $(if $(BENCH_FAIL),--benchmark-compare-fail=$(BENCH_FAIL),) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) $(BENCH_VENV) demo_out .pytest_cache

# mypy (standard mode) on src/giqa; tests/test_typing.py runs the same check.
typecheck: $(STAMP)
	$(PY) -m mypy
