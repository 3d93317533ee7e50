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

.PHONY: test demo bench install clean typecheck

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

demo: $(STAMP)
	$(PY) examples/demo.py --out demo_out

# Each script prints a Markdown table of ratios against a peer measured in the same process;
# benchmarks/RESULTS.md collects the recorded tables and the commands that made them.
BENCHES := geometry text pipeline scoring detection train scaling
bench: $(STAMP)
	@for b in $(BENCHES); do echo "== benchmarks/bench_$$b.py"; $(PY) benchmarks/bench_$$b.py || exit 1; done

clean:
	rm -rf $(VENV) demo_out .pytest_cache

# mypy (standard mode) on src/giqa; tests/test_typing.py runs the same check.
typecheck: $(STAMP)
	$(PY) -m mypy
