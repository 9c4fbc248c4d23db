# lrp_tutor — every command creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

.PHONY: lab test lint demo exercises bench clean models

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, pinned to the CPU build (a plain `torch` would pull a multi-GB CUDA build),
# then the package with its extras.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,notebooks,data,browser,grading]"
	$(MAKE) --no-print-directory models

# Real models for the tests (torchvision, timm) and Zennit for the agreement tests. They pin
# torch versions of their own, so they come without dependencies (torch is there already);
# the package itself needs none of them.
models: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-deps "torchvision<=0.29.1" "timm>=1.0" "zennit==0.5.1"
	$(BIN)/python -m pip install --quiet "transformers>=5"
	touch $(STAMP)

# LXT 2.1, the reference implementation of AttnLRP, for tests/test_lxt.py: it needs
# transformers<5, so it lives in an environment of its own (the package works with both).
LXT_VENV := .venv-lxt
LXT_STAMP := $(LXT_VENV)/.installed
$(LXT_STAMP): pyproject.toml
	$(PYTHON) -m venv $(LXT_VENV)
	$(LXT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LXT_VENV)/bin/python -m pip install --quiet "$(TORCH)"
	$(LXT_VENV)/bin/python -m pip install --quiet "transformers>=4.57,<5" pytest tabulate click
	$(LXT_VENV)/bin/python -m pip install --quiet --no-deps "lxt==2.1" "zennit==0.5.1" "torchvision<=0.29.1"
	$(LXT_VENV)/bin/python -m pip install --quiet -e .
	touch $(LXT_STAMP)

# JupyterLab refuses to run as root without --allow-root (containers, CI machines).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)  ## open the course in JupyterLab
	$(BIN)/jupyter lab $(ALLOW_ROOT) notebooks/

test: $(STAMP) $(LXT_STAMP)  ## lint, unit tests (nbgrader's autograde and LXT included), doctests, every notebook under nbval
	$(BIN)/ruff check lrp_tutor tests benchmarks scripts
	$(BIN)/ruff format --check lrp_tutor tests benchmarks scripts
	LRP_TUTOR_REQUIRE_MODELS=1 LRP_TUTOR_REQUIRE_NBGRADER=1 \
		$(BIN)/python -m pytest -q --doctest-modules lrp_tutor tests --ignore=tests/test_lxt.py
	LRP_TUTOR_REQUIRE_LXT=1 $(LXT_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_lxt.py
	$(BIN)/python -m pytest -q --nbval notebooks exercises/source --nbval-sanitize-with tests/nbval_sanitize.cfg

lint: $(STAMP)
	$(BIN)/ruff check lrp_tutor tests benchmarks scripts
	$(BIN)/ruff format --check lrp_tutor tests benchmarks scripts

demo: $(STAMP)  ## explain shipped digits and a photograph, print the ledger, write out/lrp_demo.png
	$(BIN)/lrp-tutor demo --out out/lrp_demo.png

exercises: $(STAMP)  ## regenerate the student copies from exercises/source
	$(BIN)/lrp-tutor exercises build

bench: $(STAMP)  ## print speed ratios (not part of the tests)
	$(BIN)/python benchmarks/bench_stepper.py
	$(BIN)/python benchmarks/bench_explain.py --repeats 3

clean:
	rm -rf $(VENV) $(LXT_VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
