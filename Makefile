# Two commands do all the set-up: `make demo` and `make test` (each creates .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision are pinned here (not in pyproject) so a fresh machine takes the CPU-usable
# builds that lie on disk; users elsewhere get any version the open ranges in pyproject.toml allow.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: test lint install demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The paper's comparison offline on synthetic data (a few minutes on 2 CPU cores); DATA=../shared/data runs
# it with the real ImageNet MobileNet-V1 0.25 on RetinaMNIST. Report: runs/demo/.../results.md
demo: install
	$(BIN)/python scripts/demo.py $(if $(DATA),--data $(DATA))

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check timm_transfusion tests scripts benchmarks
	$(BIN)/ruff format --check timm_transfusion tests scripts benchmarks
