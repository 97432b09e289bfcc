# Two user-facing targets: `make run` (set up, then the main job) and `make test`.
PYTHON ?= python3.11
# Blender 5.1 - 5.3 run Python 3.13: the second venv stands for them (bpy 5.3.0, numpy 2.x).
# python3.13 on PATH, else pyenv's 3.13 (its shim is on PATH here but not active).
ifndef PYTHON313
PYTHON313 := $(shell for c in python3.13 "$$(pyenv root 2>/dev/null)/versions/$$(pyenv versions --bare 2>/dev/null | grep -m1 '^3\.13')/bin/python3.13"; do \
	"$$c" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo "$$c"; break; }; done)
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
VENV313 := .venv313
BIN313 := $(VENV313)/bin
STAMP313 := $(VENV313)/.installed-stamp
# What the 3.11 run leaves for the 3.13 run (tiny model, remeshed test faces): see tests/addon_fixture.py.
TEST_SHARED := $(CURDIR)/build/test-shared

.PHONY: setup setup-py313 run test test-py311 test-py313 clean

setup: $(STAMP) data/template.npz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU wheel that lies on this machine (pip's find-links); never an unpinned torch.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,test]'
	touch $(STAMP)

# No torch here (the local wheel is cp311): the core, bpy 5.3.0 and the test tools only.
setup-py313: $(STAMP313)

$(STAMP313): pyproject.toml
	@test -n "$(PYTHON313)" || { echo "make test needs Python 3.13 (Blender 5.1+): install it (pyenv install 3.13) or pass PYTHON313=/path/to/python3.13"; exit 1; }
	$(PYTHON313) -m venv $(VENV313)
	$(BIN313)/python -m pip install -q --upgrade pip
	$(BIN313)/python -m pip install -q -e '.[test]'
	touch $(STAMP313)

# Rebuilt when its builder changes (the fingerprint stays: same vertices and faces).
data/template.npz: $(STAMP) animateme/template_build.py
	$(BIN)/animateme data template

# The main job: animate a built-in sample face headless (writes out/demo/demo.blend, .mp4, .gif).
run: setup
	$(BIN)/animateme demo --out out/demo

# The whole suite on Python 3.11 (Blender 4.2 - 5.0: bpy 5.0.1, numpy 1.26, torch), then the
# extension and core tests on Python 3.13 (Blender 5.1 - 5.3: bpy 5.3.0, numpy 2.x).
# Every platform's pinned wheels, downloaded once (the build tests zip all three platforms).
WHEELS_STAMP := .whl/.fetched-stamp
$(WHEELS_STAMP): blender_manifest.toml $(STAMP)
	$(BIN)/python build_addon.py --fetch-only
	touch $(WHEELS_STAMP)

test: setup setup-py313 $(WHEELS_STAMP)
	# Both runs even when the first fails; the exit status says whether either failed.
	status=0; \
	$(MAKE) --no-print-directory test-py311 || status=1; \
	$(MAKE) --no-print-directory test-py313 || status=1; \
	exit $$status

# Each run ends with its 15 slowest tests (--durations=15); the `slow` marker names the known ones
# (`.venv/bin/python -m pytest -m "not slow" tests` for a quick run).

# Trains the tiny model afresh and leaves it, with the remeshed test faces, for test-py313.
test-py311: setup
	rm -rf $(TEST_SHARED)
	ANIMATEME_TEST_SHARED=$(TEST_SHARED) $(BIN)/python -m pytest -q --durations=15 tests

# Needs what test-py311 leaves in build/test-shared (the tiny model is trained with torch).
test-py313: setup-py313 data/template.npz
	ANIMATEME_TEST_SHARED=$(TEST_SHARED) $(BIN313)/python -m pytest -q --durations=15 -m both_pythons tests

clean:
	rm -rf $(VENV) $(VENV313) data dist build
