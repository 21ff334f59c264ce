# One command sets up and runs the quickstart, one sets up and runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: setup demo test test-unit lint browser bench bench-seqrec bench-seqrec-seeds clean

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

# RecBole 1.2.1 in its own venv (bench/.recbole-venv) against our GRU4Rec and SASRec.
# bench-seqrec: seconds per epoch and their ratio (2 epochs each, 1 thread; about 20 minutes).
bench-seqrec: setup
	$(BIN)/python bench/bench_seqrec.py --epochs 2 --models gru4rec,sasrec --threads 1 --results bench/results/seqrec-speed.json

# bench-seqrec-seeds: test NDCG@10 over seeds, GRU4Rec 20 epochs (about an hour per seed here).
SEQREC_SEEDS ?= 2020 2021 2022 2023 2024
bench-seqrec-seeds: setup
	for seed in $(SEQREC_SEEDS); do $(BIN)/python bench/bench_seqrec.py --epochs 20 --models gru4rec --threads 1 --seed $$seed --results bench/results/seqrec-gru4rec-s$$seed.json || exit 1; done
	$(BIN)/python bench/bench_seqrec.py --summarise $(foreach seed,$(SEQREC_SEEDS),bench/results/seqrec-gru4rec-s$(seed).json)

clean:
	rm -rf $(VENV) runs bench/results
