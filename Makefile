# `make test` and `make demo` set up everything they need in .venv first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --progress-bar on -e '.[test,demo]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest
	$(PY) scripts/case_coverage.py
	$(PY) scripts/import_layers.py
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

# The example admin portal on http://127.0.0.1:5000 with a local mail catcher (Ctrl-C stops).
demo: $(STAMP)
	$(PY) -m example_app

# Benchmarks print ratio tables against baselines measured in the same run (not part of
# CI). benchmarks/sending.py also wants Postfix's smtp-sink: apt-get install postfix.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/pages.py
	$(PY) benchmarks/rotation.py
	$(PY) benchmarks/sending.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
