# Two commands on a fresh machine (Python 3.11, no GPU):
#   make demo   set up .venv and run the main job on built-in data
#   make test   set up .venv and run the test suite (+ benchmarks once, untimed)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-stamp
PYTHON ?= python3

.PHONY: setup test demo lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -q
	$(PY) -m pytest benchmarks -q --benchmark-disable

demo: $(STAMP)
	$(VENV)/bin/spotformer demo --out demo_out

lint: $(STAMP)
	$(VENV)/bin/ruff check sw_mro spotformer tests benchmarks

bench: $(STAMP)
	$(PY) -m pytest benchmarks --benchmark-autosave --benchmark-columns=min,median,mean,ops,rounds

clean:
	rm -rf $(VENV) demo_out .pytest_cache .benchmarks
