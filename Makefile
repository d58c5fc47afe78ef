# deleverage — the two set-up commands are `make demo` and `make test`; both create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out/demo

.PHONY: demo test test-deep bench lint venv clean docs docs-check

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m deleverage demo --out $(OUT)

# Hypothesis: `test` is derandomised (the same examples on every run and machine, no example
# database); `test-deep` draws fresh random examples, ten times as many (tests/conftest.py).
test: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -n 2 -q

test-deep: $(STAMP)
	HYPOTHESIS_PROFILE=deep DELEVERAGE_ENGINE_EXAMPLES=400 $(PY) -m pytest -n 2 -q

# Every command output shown in README.md and docs/*.md, rerun and spliced in (scripts/make_docs.py);
# docs-check changes nothing and fails on a stale block (tests/docs/ runs the same check).
docs: $(STAMP)
	$(PY) scripts/make_docs.py

docs-check: $(STAMP)
	$(PY) scripts/make_docs.py --check

bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src/deleverage

clean:
	rm -rf $(VENV) .venv-hbt out .pytest_cache .hypothesis
