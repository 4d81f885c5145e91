# attntrain: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/pos_ewt_quick.yaml
LENGTH_ARGS ?=

.PHONY: venv demo test bench bench-decode bench-length bench-startup fit clean

# torch first, pinned to the CPU wheel on local disk: a bare `torch` requirement would pull a CUDA build.
$(BIN)/attntrain: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/attntrain

demo: venv  ## POS tagging on UD English-EWT with a short shipped config; prints dev/test metrics
	$(BIN)/attntrain fit $(CONFIG) --overwrite

fit: venv  ## make fit CONFIG=configs/pos_ewt.yaml
	$(BIN)/attntrain fit $(CONFIG)

test: venv
	$(BIN)/python -m pytest -q

bench: venv  ## training throughput vs Hugging Face BERT (installs the bench extra)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python scripts/bench_train.py
	$(MAKE) bench-decode
	$(MAKE) bench-length LENGTH_ARGS=--quick
	$(MAKE) bench-startup

bench-decode: venv  ## seq2seq decoding: greedy and beam 5, key/value cache vs recomputing the prefix
	$(BIN)/python scripts/bench_decode.py --threads 1

# Full run: `make bench-length` (T = 256 .. 16384, about 13 min on 2 cores); `make bench` passes --quick (T <= 2048).
bench-length: venv  ## time and memory of one step vs input length: full vs windowed attention, CNN, bi-LSTM
	$(BIN)/python scripts/bench_length.py --threads 1 $(LENGTH_ARGS)

bench-startup: venv  ## start-up: --help, validate and config errors vs `import torch`; predict's cold start split
	$(BIN)/python scripts/bench_startup.py --threads 1

clean:
	rm -rf $(VENV) runs bench_results
