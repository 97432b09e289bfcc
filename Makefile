# Two user-facing targets: `make run` (set up, then the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test clean

setup: $(STAMP) data/template.npz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU wheel that lies on this machine (pip's find-links); never an unpinned torch.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,test]'
	touch $(STAMP)

data/template.npz: $(STAMP)
	$(BIN)/animateme data template

# The main job: animate a built-in sample face headless (writes out/demo/demo.blend, .mp4, .gif).
run: setup
	$(BIN)/animateme demo --out out/demo

test: setup
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) data dist build
