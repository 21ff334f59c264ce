# One command sets up and runs the quickstart, one sets up and runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup demo test test-unit lint browser bench bench-seqrec clean

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
	$(BIN)/python bench/bench_training.py --repeats 3
	$(BIN)/python bench/bench_objectives.py --repeats 3
	$(BIN)/python bench/bench_attribution.py --run $$(ls -dt runs/quickstart*/ | head -1) --trained --samples 200 --items 9 --threads 2
	$(BIN)/python bench/bench_simulator.py --scorer mf

# RecBole 1.2.1 in its own venv (bench/.recbole-venv) against our GRU4Rec and SASRec; long.
bench-seqrec: setup
	$(BIN)/python bench/bench_seqrec.py --epochs 30 --models gru4rec,sasrec --threads 2

clean:
	rm -rf $(VENV) runs bench/results
