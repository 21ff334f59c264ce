# One command sets up and runs the quickstart, one sets up and runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin

PIP = -m pip install -q --disable-pip-version-check
# A second interpreter for the install check (pyenv's 3.12 where there is one).
PYTHON312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) python3.12)
INSTALL_VENV ?= .venvs/install
PY312_VENV ?= .venvs/py312

.PHONY: setup demo test test-unit test-install test-py312 lint browser bench bench-seqrec bench-seqrec-seeds clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP) torch==2.13.0
	$(BIN)/python $(PIP) -c constraints-dev.txt -e ".[dev]"
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
	$(MAKE) test-install test-py312

# `pip install .` (not editable) into a fresh environment that already has torch: pip must install
# no torch/CUDA/triton package; then the installed command runs doctor and the tiny end-to-end
# tests (a run with dtype = auto, a run with train.epochs = 0) against the installed package.
test-install: setup
	rm -rf $(INSTALL_VENV) && $(PYTHON) -m venv $(INSTALL_VENV)
	$(INSTALL_VENV)/bin/python $(PIP) torch==2.13.0
	$(INSTALL_VENV)/bin/python $(PIP) --report $(INSTALL_VENV)/report.json .
	$(BIN)/python scripts/check_install.py $(INSTALL_VENV)/report.json
	$(INSTALL_VENV)/bin/recbias doctor --quick
	$(INSTALL_VENV)/bin/python $(PIP) pytest==9.2.0
	cd tests && ../$(INSTALL_VENV)/bin/python -c "import recbias; assert 'site-packages' in recbias.__file__, recbias.__file__"
	$(INSTALL_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_hardware.py tests/test_dtype_run.py

# Python 3.12 with the lower ends of pyproject's ranges: torch 2.11.0 from PyPI (a CUDA build, the
# only kind PyPI has for 3.12; it runs on the CPU, ~4.7 GB, about a minute from the registry) and
# constraints-lowest.txt (transformers 5.17, peft 0.21, accelerate 1.15). `pip install .` must
# add no torch/CUDA/triton package; then doctor and the whole unit suite run against the installed
# package. The venv is removed afterwards.
PY312_TORCH ?= 2.11.0
test-py312: setup
	@command -v $(PYTHON312) >/dev/null || { echo "test-py312: no Python 3.12 ($(PYTHON312)); set PYTHON312=" >&2; exit 1; }
	rm -rf $(PY312_VENV) && $(PYTHON312) -m venv $(PY312_VENV)
	$(PY312_VENV)/bin/python $(PIP) torch==$(PY312_TORCH)
	$(PY312_VENV)/bin/python $(PIP) -c constraints-lowest.txt --report $(PY312_VENV)/report.json .
	$(BIN)/python scripts/check_install.py $(PY312_VENV)/report.json
	$(PY312_VENV)/bin/recbias doctor --quick
	$(PY312_VENV)/bin/python $(PIP) -c constraints-lowest.txt pytest==9.2.0 captum==0.9.0 "trl>=1.16,<2" "selenium>=4.20,<5"
	cd tests && ../$(PY312_VENV)/bin/python -c "import sys, recbias; assert sys.version_info[:2] == (3, 12); assert 'site-packages' in recbias.__file__, recbias.__file__"
	$(PY312_VENV)/bin/python -m pytest -q -p no:cacheprovider -m "not integration"
	rm -rf $(PY312_VENV)

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
	rm -rf $(VENV) .venvs build runs bench/results
