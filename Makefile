# Two commands on a fresh machine:
#   make demo   - generate sample data, train, export and score it end to end
#   make test   - lint (ruff) + the test suite
# Both create .venv from the project's own files. torch is pinned (constraints.txt)
# so the test environment takes the CPU wheel; pyproject.toml keeps a range.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo-output

.PHONY: install test lint demo clean bench-train bench-score

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[train,dev,tune,spark,dask]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check recmodels tests benchmarks

test: lint
	$(VENV)/bin/pytest

demo: $(STAMP)
	$(VENV)/bin/python -m recmodels.demo --out $(DEMO)

bench-train: $(STAMP)
	$(PY) benchmarks/train_throughput.py

bench-score: $(STAMP)
	$(PY) benchmarks/score_throughput.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache
