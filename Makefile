# The README's two commands. Both create .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Hide the (absent) GPU from TF and keep JAX on the CPU everywhere.
export CUDA_VISIBLE_DEVICES :=
export TF_CPP_MIN_LOG_LEVEL := 3
export JAX_PLATFORMS := cpu

.PHONY: demo test test-slow install install-test

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: setup.py $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: setup.py $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/python -m llmrec_jax.demo

test: install-test
	$(BIN)/python -m pytest -q -rs -n 2 --dist loadfile -m "not slow" tests

# The checks that take minutes each (the demo's quality, the notebook in a fresh process).
test-slow: install-test
	$(BIN)/python -m pytest -q -rs -n 2 --dist loadfile -m slow tests
