# Two entry points do all set-up themselves, in a project-local virtual environment (.venv/):
#   make demo   - the main job on the embedded default data set
#   make test   - lint + the whole test suite
# Both are idempotent; the second run skips every install step whose inputs did not change.
#
# detectron2 comes from tools/install_detectron2.py. DETECTRON2_SOURCE=<archive or folder of the
# upstream repository> builds it from that source (offline machines, CI); DETECTRON2_BUILD=python
# skips compiling its C++ ops. Changing either re-runs the set-up.
#   make test-d2-0.6 - the detection tests against detectron2 0.6 (Python-only build), installed
#                      alone into $(D2_06) and put first on PYTHONPATH (torch etc. are shared)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.luminet-setup

SEEDS      ?= 1
DEMO_ARGS  ?=
TEST_ARGS  ?=

DETECTRON2_SOURCE ?=
DETECTRON2_BUILD  ?= compiled
LUMINET_D2_ROUTE  ?=
export DETECTRON2_SOURCE DETECTRON2_BUILD LUMINET_D2_ROUTE

# What decides which detectron2 is installed; the file changes only when the choice does.
D2_CHOICE := $(VENV)/.detectron2-choice
# detectron2 0.6 for `make test-d2-0.6`, and the tests that need detectron2 (the classification
# tests never import it).
D2_06      := $(VENV)/detectron2-0.6
D2_TESTS   := tests --ignore-glob='tests/test_cls_*.py' --ignore=tests/test_losses.py

.PHONY: setup demo demo-cls test test-d2-0.6 lint format bench gpu-bundle clean-venv FORCE

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24,<25"

$(D2_CHOICE): FORCE | $(PY)
	@echo "source=$(DETECTRON2_SOURCE) build=$(DETECTRON2_BUILD) route=$(LUMINET_D2_ROUTE)" \
	  > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; echo "detectron2 choice: $$(cat $@)"; fi

# pip >= 25 refuses to download the detectron2 sdist used by the offline route: keep pip 24.
$(STAMP): $(PY) requirements/torch.txt requirements/base.txt requirements/test.txt setup.py \
          tools/install_detectron2.py $(D2_CHOICE) $(wildcard $(DETECTRON2_SOURCE))
	$(PY) -m pip install --quiet -r requirements/torch.txt
	$(PY) -m pip install --quiet -r requirements/base.txt -r requirements/test.txt
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import torch, torchvision, detectron2, luminet, luminet_det; \
	  from importlib.metadata import version; \
	  print('set-up ok: torch', torch.__version__, '| detectron2', version('detectron2'))"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --seeds $(SEEDS) $(DEMO_ARGS)

demo-cls: $(STAMP)
	$(PY) tools/demo_cls.py $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest $(TEST_ARGS)

$(D2_06)/.luminet-setup: tools/install_detectron2.py | $(STAMP)
	DETECTRON2_SOURCE= $(PY) tools/install_detectron2.py --route pyonly --target $(D2_06)
	touch $@

test-d2-0.6: $(D2_06)/.luminet-setup
	PYTHONPATH=$(abspath $(D2_06)) $(PY) -c "from importlib.metadata import version; \
	  import detectron2; print('detectron2', version('detectron2'), 'from', detectron2.__file__)"
	DETECTRON2_SOURCE= PYTHONPATH=$(abspath $(D2_06)) $(PY) -m pytest $(D2_TESTS) $(TEST_ARGS)

bench: $(STAMP)
	mkdir -p output/bench
	$(PY) tools/benchmark.py --preset cpu-small --json output/bench/cpu-small.json

gpu-bundle: $(STAMP)
	bash tools/gpu_bundle.sh

clean-venv:
	rm -rf $(VENV)
