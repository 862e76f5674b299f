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
	$(PY) -m pip install -q -e ".[book,dev]" selenium

data: install
	$(VENV)/bin/tinygpt prepare shakespeare_char shakespeare_complete

book: data
	$(VENV)/bin/tinygpt book run --preset $(PRESET) --jobs $(JOBS)
	$(VENV)/bin/tinygpt book build $(if $(filter-out cpu,$(PRESET)),--book-dir build/book-$(PRESET))

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check tinygpt tests notebooks scripts

.PHONY: install data book test lint
