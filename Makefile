# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install mmcore + every plugin, train the bundled av_digits example
#                 (into runs/av_digits, replacing the previous demo run)
#   make test   - create .venv, install mmcore + every plugin + test tools, run the test suite
PYTHON ?= python3
VENV ?= .venv
# The torch to install first. This default is a CPU build where a local wheel exists; elsewhere
# pass e.g. TORCH_SPEC='torch>=2.4' (pip then picks the build for your platform).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
PLUGINS := $(sort $(wildcard plugins/mmcore-plugin-*))
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
# How the editable installs reach the sources. 'compat' puts the source folders on sys.path
# through a plain .pth file, which mypy and pyright read; setuptools' default ('lenient') uses
# an import hook that they cannot see. 'strict' is seen too, but links each file, so a new or
# renamed module needs `make install` again. README.md#type-checkers
EDITABLE_MODE ?= compat

.PHONY: install demo test quick lint typecheck bench clean

# Python writes each module's bytecode on first import (installs skip compiling it, below), so
# a machine that sets PYTHONDONTWRITEBYTECODE would compile every module from source in every
# process the tests start: test_cli_imports and test_cli_exits took 51 CPU seconds with it set
# and 42 without (2 AMD EPYC cores, 2026-12-07)
unexport PYTHONDONTWRITEBYTECODE

# the Makefile is a prerequisite: a change of how things are installed reinstalls them.
# --no-compile (the second install): Python compiles a module's bytecode when it is first
# imported, instead of pip compiling every module of every dependency (176 -> 102 s on 2 AMD
# EPYC cores, 2026-12-07)
$(BIN)/.installed: Makefile pyproject.toml $(foreach p,$(PLUGINS),$(p)/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q '$(TORCH_SPEC)'
	$(BIN)/python -m pip install -q --no-compile --config-settings editable_mode=$(EDITABLE_MODE) \
	  -e '.[test]' $(foreach p,$(PLUGINS),-e $(p))
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/mmcore train examples/av_digits/spec.py --overwrite
	@echo "(one seed, train.seed=0: floating-point differences between CPUs move it by a few points; docs/results.md has the mean over 3 seeds of every setting)"

# pytest-xdist runs the tests on every logical core (one process each, at most
# PYTEST_PROCESSES); plain `.venv/bin/python -m pytest` runs them in one process.
# loadscope: each test module runs on one worker, so a module's fixtures that train, export or
# start a server are made once, not once per worker (12:42 for the suite on 2 AMD EPYC cores,
# 2026-12-07; a module's tests spread over the workers took 13:11 before the export tests were
# cut by 3 CPU minutes)
PYTEST_PROCESSES ?= 8
PYTEST := $(BIN)/python -m pytest -n logical --maxprocesses=$(PYTEST_PROCESSES) --dist loadscope

test: install
	$(PYTEST)

# everyday work: the suite without its slow tail (tests/conftest.py lists it)
quick: install
	$(PYTEST) -m "not slow"

lint: install
	$(BIN)/ruff check .

# mmcore's own types (.ci/mypy.ini says which modules are not clean yet); tests/test_typing.py
# checks a user's script against the installed package
typecheck: install
	$(BIN)/mypy --config-file .ci/mypy.ini

# every benchmark of benchmarks/README.md, each rewriting its section of docs/benchmarks.md
BENCHMARKS := data_pipeline trainer_overhead pipeline_vs_step startup scaling export_latency gpu
bench: install
	status=0; for b in $(BENCHMARKS); do \
	  $(BIN)/python benchmarks/$$b.py --write docs/benchmarks.md || status=1; done; exit $$status

clean:
	rm -rf $(VENV) runs
