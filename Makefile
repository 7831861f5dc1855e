# Quick start: `make demo` and `make test` on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DEMO_OUT ?= demo_run

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: here it resolves to the CPU wheel on disk
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	# The 'bench' extra (the loss peers of tests/losses/test_peers.py and benchmarks/), pinned as
	# in pyproject.toml, WITHOUT their dependencies: lightly requires torchvision, but PyPI's
	# torchvision does not import beside this CPU torch ("operator torchvision::nms does not
	# exist") and its newest release would replace torch by a multi-GB CUDA build. The losses need
	# only torch, numpy and scikit-learn (installed above); benchmarks/peers.py loads lightly's
	# NTXentLoss module without the package __init__ files that import torchvision.
	$(PIP) install --quiet --no-deps lightly==1.6.0 pytorch-metric-learning==2.9.0
	touch $@

setup: $(VENV)/.installed

# the federated extra (Flower + Ray) so `make test` covers neuro-ssl federate
$(VENV)/.federated: $(VENV)/.installed
	$(PIP) install --quiet -e '.[dev,federated]'
	touch $@

demo: setup
	$(VENV)/bin/neuro-ssl demo --out $(DEMO_OUT)

# two pytest-xdist workers, one thread each (tests/conftest.py): the suite's long tests wait on
# subprocesses (Flower, torchrun, the CLI) as much as they compute. TEST_WORKERS=0 runs it serially.
TEST_WORKERS ?= 2
test: setup $(VENV)/.federated
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup tests

bench: setup
	$(PY) benchmarks/data_throughput.py
	$(PY) benchmarks/pretrain_throughput.py
	$(PY) benchmarks/loss_peers.py
	$(PY) benchmarks/train_peers.py
	$(PY) benchmarks/representation_quality.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
