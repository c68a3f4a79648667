# `make demo` and `make test` are the two commands of the README; everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# dvc runs each stage's `python -m ...` from PATH: put the venv first
RUN := PATH="$(CURDIR)/$(BIN):$$PATH"
# The offline demo: the whole pipeline on the shipped dataset with a DeBERTa-v3-architecture model built from a
# config and a SentencePiece tokenizer trained on the split, as an experiment (params.yaml keeps the real base).
DEMO_PARAMS := -S model.name=scratch-tiny -S train.lr=1e-3 -S train.epochs=2 -S train.batch_size=16 \
	-S train.max_length=256 -S train.warmup_ratio=0.05

.PHONY: setup demo repro test bench clean
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

demo: setup
	$(RUN) $(BIN)/dvc exp run $(DEMO_PARAMS)
	$(RUN) $(BIN)/dvc metrics show

repro: setup
	$(RUN) $(BIN)/dvc repro

test: setup
	$(RUN) $(BIN)/python -m pytest -q

# bench-only dependencies (TRL, the peer the trainer is timed against), at versions compatible with our pins
$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(BIN)/pip install -q --disable-pip-version-check -r bench/requirements.txt -c requirements.txt
	touch $@

bench: setup $(VENV)/.bench-installed
	$(RUN) $(BIN)/python -m bench
	$(BIN)/python -m bench.data_scale

clean:
	rm -rf $(VENV) .scratch
