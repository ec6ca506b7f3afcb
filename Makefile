# Two entry points do all set-up themselves, in a project-local virtual environment (.venv/):
#   make demo   - the main job on the embedded default data set
#   make test   - lint + the whole test suite
# Both are idempotent; the second run skips every install step whose inputs did not change.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.luminet-setup

SEEDS      ?= 1
DEMO_ARGS  ?=
TEST_ARGS  ?=

.PHONY: setup demo demo-cls test lint format bench gpu-bundle clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24,<25"

# pip >= 25 refuses to download the detectron2 sdist used by the offline route: keep pip 24.
$(STAMP): $(PY) requirements/torch.txt requirements/base.txt requirements/test.txt setup.py \
          tools/install_detectron2.py
	$(PY) -m pip install --quiet -r requirements/torch.txt
	$(PY) -m pip install --quiet -r requirements/base.txt -r requirements/test.txt
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import torch, torchvision, detectron2, luminet, luminet_det; \
	  print('set-up ok: torch', torch.__version__, '| detectron2', detectron2.__version__)"
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

bench: $(STAMP)
	mkdir -p output/bench
	$(PY) tools/benchmark.py --preset cpu-small --json output/bench/cpu-small.json

gpu-bundle: $(STAMP)
	bash tools/gpu_bundle.sh

clean-venv:
	rm -rf $(VENV)
