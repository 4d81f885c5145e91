# attntrain: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/pos_ewt_quick.yaml
LENGTH_ARGS ?=
DECODE_ARGS ?=
PIPELINE_ARGS ?=

.PHONY: venv demo test docs bench bench-decode bench-pipeline bench-length bench-startup bench-additive bench-data fit vectors vectors-imdb clean

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

test: venv  ## the layers contract (import-linter, pyproject.toml), then the tests
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

vectors: venv  ## word2vec on the shipped training text (IMDB, EWT, WNUT-17, Multi30k, SST-2 train) for configs/*_vectors.yaml
	$(BIN)/pip install -q -e '.[vectors]'
	$(BIN)/python scripts/train_vectors.py --corpus imdb ewt wnut multi30k sst2 --spelling plain --dim 128 \
		--skipgram --threads 2 --out runs/vectors/english_sg_128.vec.gz

vectors-imdb: venv  ## word2vec on the 25,000 IMDB training reviews only (no labels), for init --vectors on other English text
	$(BIN)/pip install -q -e '.[vectors]'
	$(BIN)/python scripts/train_vectors.py --corpus imdb --spelling plain --dim 128 --skipgram --threads 2 \
		--out runs/vectors/imdb_sg_128.vec.gz

docs: venv  ## the docs site: pages under docs/, mkdocs build --strict into site/ (installs the docs extra)
	$(BIN)/pip install -q -e '.[docs]'
	$(BIN)/mkdocs build --strict --site-dir site

bench: venv  ## training throughput vs Hugging Face BERT (installs the bench extra)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python scripts/bench_train.py
	$(MAKE) bench-decode DECODE_ARGS=--hf
	$(MAKE) bench-pipeline PIPELINE_ARGS=--quick
	$(MAKE) bench-length LENGTH_ARGS=--quick
	$(MAKE) bench-startup
	$(MAKE) bench-additive ADDITIVE_ARGS=--quick
	$(MAKE) bench-data

# `make bench` adds --hf: the same searches against Hugging Face generate (needs the bench extra).
bench-decode: venv  ## seq2seq decoding: greedy and beam 5, key/value cache vs recomputing the prefix
	$(BIN)/python scripts/bench_decode.py --threads 1 $(DECODE_ARGS)

# Full run: all 12,544 EWT sentences, 2 rounds; `make bench` passes --quick (3,000 sentences).
bench-pipeline: venv  ## end to end on UD EWT: attntrain's trainer vs HF BERT (random and length-grouped batches)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python scripts/bench_pipeline.py --threads 1 $(PIPELINE_ARGS)

# Full run: `make bench-length` (T = 256 .. 16384, about 13 min on 2 cores); `make bench` passes --quick (T <= 2048).
bench-length: venv  ## time and memory of one step vs input length: full vs windowed attention, CNN, bi-LSTM
	$(BIN)/python scripts/bench_length.py --threads 1 $(LENGTH_ARGS)

bench-startup: venv  ## start-up: --help, validate and config errors vs `import torch`; predict's cold start split
	$(BIN)/python scripts/bench_startup.py --threads 1

ADDITIVE_ARGS ?=
bench-additive: venv  ## additive vs dot scoring: time and memory of a step vs T, whole hidden vs query chunks
	$(BIN)/python scripts/bench_additive.py --threads 1 $(ADDITIVE_ARGS)

# Multi30k at 1x and 20x (cold and warm data cache), then the generic task on SST-2 as CSV.
bench-data: venv  ## data at scale: peak memory and time to the first step of fit, 1x vs 20x the training data
	$(BIN)/python scripts/bench_data_scale.py --scales 1 20 --warm
	$(BIN)/python scripts/bench_data_scale.py --generic --scales 1 20 --steps 20
	$(BIN)/python scripts/bench_subword.py --repeats 3

clean:
	rm -rf $(VENV) runs bench_results site
