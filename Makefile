# One command sets up and runs the quickstart, one sets up and runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup demo test test-unit lint browser bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/recbias doctor --quick
	$(BIN)/recbias run configs/quickstart.toml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-unit: setup
	$(BIN)/pytest -q -m "not integration"

browser:
	bash scripts/install_chromium.sh

test: lint browser
	$(BIN)/pytest -q -m "not integration"
	$(BIN)/pytest -q -m integration

bench: setup
	$(BIN)/python bench/make_decoding_inputs.py configs/quickstart.toml --out bench/results/inputs > bench/results/model_dir
	$(BIN)/python bench/bench_decoding.py --model $$(cat bench/results/model_dir) --prompts bench/results/inputs/prompts.jsonl --catalog bench/results/inputs/catalog.jsonl --users 64 --dtype fp32
	$(BIN)/python bench/bench_training.py

clean:
	rm -rf $(VENV) runs bench/results
