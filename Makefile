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

# `dvc exp run` records each experiment as a git commit under refs/exps: on a machine without a git identity the
# demo uses a local one rather than stopping with DVC's "Git user name and email must be configured"
GIT_IDENTITY := $(shell git config user.email >/dev/null 2>&1 || echo GIT_AUTHOR_NAME=rewardkit-demo \
	GIT_AUTHOR_EMAIL=demo@localhost GIT_COMMITTER_NAME=rewardkit-demo GIT_COMMITTER_EMAIL=demo@localhost)

.PHONY: setup demo metrics repro test test-fast bench gpu-wheels clean
setup: $(VENV)/.installed

# the pinned dependencies, then the rewardkit package itself, editable (what `import rewardkit` finds)
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# dvc through stages.dvc_run: a second run started while one is going stops at once with one line (DVC allows one)
demo: setup
	$(RUN) $(GIT_IDENTITY) $(BIN)/python -m stages.dvc_run exp run $(DEMO_PARAMS)
	$(RUN) $(BIN)/python -m stages.summary

# the last run in a few lines (`dvc metrics show` has every number)
metrics: setup
	$(RUN) $(BIN)/python -m stages.summary

repro: setup
	$(RUN) $(BIN)/python -m stages.dvc_run repro

# the benchmark smoke tests (tests/e2e/test_bench*.py) run TRL's RewardTrainer as a peer: the bench-only pins too
test: setup $(VENV)/.bench-installed
	$(RUN) $(BIN)/python -m pytest -q --durations=15

# the in-process tier alone (no dvc, torchrun or subprocesses): for everyday work
test-fast: setup
	$(RUN) $(BIN)/python -m pytest -q -m "not e2e"

# bench-only dependencies (TRL, the peer the trainer is timed against), at versions compatible with our pins
$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(BIN)/pip install -q --disable-pip-version-check -r bench/requirements.txt -c requirements.txt
	touch $@

bench: setup $(VENV)/.bench-installed
	$(RUN) $(BIN)/python -m bench
	$(BIN)/python -m bench.scale

# wheels for the lent GPU machine (Python 3.12 there, nothing downloadable): what bench/gpu_check.sh installs from
# .whl/ when that machine's python3 lacks TRL; the pins of bench/requirements.txt, binary wheels only
GPU_PIP_DOWNLOAD := $(PYTHON) -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
	--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl
gpu-wheels:
	$(GPU_PIP_DOWNLOAD) $$(grep -E '^[a-z]' bench/requirements.txt | grep -v '^accelerate')

clean:
	rm -rf $(VENV) .scratch
