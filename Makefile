# Two entry points for a fresh machine (see README):
#   make book PRESET=cpu   install, prepare the data, execute every notebook, build the site
#   make test              install, then run the test suite (what CI runs)
PRESET ?= cpu
JOBS ?= 2
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines and CI: the CPU build of torch (an unpinned torch pulls a multi-GB CUDA build).
TORCH ?= torch==2.13.0

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[book,dev,cluster]" selenium

data: install
	$(VENV)/bin/tinygpt prepare shakespeare_char shakespeare_complete

book: data
	$(VENV)/bin/tinygpt book run --preset $(PRESET) --jobs $(JOBS)
	$(VENV)/bin/tinygpt book build

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check tinygpt tests notebooks scripts

# What travels to the GPU device machine (git-ignored; docs/gpu.md): the notebook tool chain as
# Python 3.12 wheels, and the raw texts (../shared does not travel).
device-wheels: $(PY)
	$(PY) scripts/device_wheels.py --dest .whl --python 3.12

device-data:
	@test -n "$$TINYGPT_DATA_SOURCE" || { echo "set TINYGPT_DATA_SOURCE to the shared data folder"; exit 1; }
	mkdir -p .rawdata && cp -r "$$TINYGPT_DATA_SOURCE"/tinyshakespeare "$$TINYGPT_DATA_SOURCE"/shakespeare_complete \
		"$$TINYGPT_DATA_SOURCE"/SHA256SUMS .rawdata/ && chmod -R u+w .rawdata

.PHONY: install data book test lint device-wheels device-data
