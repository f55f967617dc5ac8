# geomind: the two commands a fresh machine needs are `make demo` and `make test`; both set everything up.
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
GEOMIND := $(VENV)/bin/geomind
DEMO_OUT ?= demo-out
DEMO_ARGS ?= --model base --timesteps 10

.PHONY: install install-test demo test bench clean

$(VENV)/.installed: pyproject.toml constraints.txt scripts/install-torch.sh
	$(PYTHON) -m venv $(VENV)
	scripts/install-torch.sh $(PIP)
	$(PIP) install -c constraints.txt -e .
	touch $@

install: $(VENV)/.installed

# The reference (terratorch 1.2.13) is a test-only dependency: its TerraMind code is used to prove parity. It is
# installed without its dependency tree, which our tests do not need; so is segmentation_models_pytorch, whose
# UNet decoder the reference's UNetDecoder wraps (its full tree would pull torchvision and CUDA wheels).
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -c constraints.txt -e ".[test]"
	$(PIP) install -c constraints.txt --no-deps terratorch==1.2.13 segmentation-models-pytorch==0.5.0
	touch $@

install-test: $(VENV)/.installed-test

demo: install
	@scripts/demo.sh $(GEOMIND) $(DEMO_OUT) $(DEMO_ARGS)

test: install-test
	$(VENV)/bin/pytest -n 2 --dist loadfile -q

bench: install-test
	$(VENV)/bin/python benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
