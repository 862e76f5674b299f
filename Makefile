# Two entry points for a fresh machine (see README):
#   make book PRESET=cpu   install, prepare the data, execute every notebook, build the site
#   make test              install, then run the whole test suite (what CI runs)
# one for readers: make lab (JupyterLab on working copies in work/); and the fast loop while working:
#   make check             ruff, then the tests not marked slow (the installed .venv as it is)
PRESET ?= cpu
JOBS ?= 2
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# CPU machines and CI: the CPU build of torch (an unpinned torch pulls a multi-GB CUDA build).
TORCH ?= torch==2.13.0

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[book,dev,cluster]" selenium
	-git config filter.strip-outputs.clean "$(PY) scripts/strip_outputs.py" && git config filter.strip-outputs.smudge cat
	touch $(INSTALLED)

# the fast loop does not re-run pip (half a minute even when nothing changed): once installed is enough
$(INSTALLED):
	$(MAKE) install

data: install
	$(VENV)/bin/tinygpt prepare shakespeare_char shakespeare_complete

book: data
	$(VENV)/bin/tinygpt book run --preset $(PRESET) --jobs $(JOBS)
	$(VENV)/bin/tinygpt book build $(if $(filter-out cpu,$(PRESET)),--book-dir build/book-$(PRESET))

# JupyterLab on working copies (work/, git-ignored): edits, outputs and new runs never touch tracked files
lab: install
	$(PY) scripts/working_copy.py
	TINYGPT_RESULTS=$(CURDIR)/work/results $(VENV)/bin/jupyter lab work/

test: install
	$(PY) -m pytest -q

lint: $(INSTALLED)
	$(VENV)/bin/ruff check tinygpt tests notebooks scripts

check: lint
	$(PY) -m pytest -q -m "not slow"

# What travels to the GPU device machine (git-ignored; book/gpu_plan.md): the notebook tool chain as
# Python 3.12 wheels, and the raw texts (../shared does not travel).
device-wheels: $(PY)
	$(PY) scripts/device_wheels.py --dest .whl --python 3.12

device-data:
	@test -n "$$TINYGPT_DATA_SOURCE" || { echo "set TINYGPT_DATA_SOURCE to the shared data folder"; exit 1; }
	mkdir -p .rawdata && cp -r "$$TINYGPT_DATA_SOURCE"/tinyshakespeare "$$TINYGPT_DATA_SOURCE"/shakespeare_complete \
		"$$TINYGPT_DATA_SOURCE"/SHA256SUMS .rawdata/ && chmod -R u+w .rawdata

.PHONY: install data book lab test lint check device-wheels device-data
