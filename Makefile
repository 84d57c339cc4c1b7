# minigen: `make book` builds the HTML book, `make test` runs every test.
# Both create the virtual environment in .venv (and install everything) on first use.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# Empty: what a notebook does unset, gpu with CUDA, else cpu (minigen.current_profile).
PROFILE ?=
NB      ?= notebooks/*.ipynb

.PHONY: venv book test lint unit notebooks-smoke book-strict execute mutation clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The rendered book, from the outputs stored in the notebooks (nothing is executed).
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going

# Everything CI runs: lint and format check, unit tests, the notebooks under nbval in the
# smoke profile, the strict book build.
test: lint unit notebooks-smoke book

# ruff at the book's 84-character code column (configured in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check minigen tests benchmarks
	$(VENV)/bin/ruff format --check minigen tests benchmarks

unit: $(STAMP)
	$(PY) -m pytest tests

notebooks-smoke: $(STAMP)
	MINIGEN_PROFILE=smoke $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

# Re-execute the notebooks in place and store their outputs (progress bars as one
# final text line): make execute PROFILE=cpu NB=notebooks/01_convolution.ipynb
# (PROFILE unset: gpu with CUDA, else cpu)
execute: $(STAMP)
	MINIGEN_PROFILE=$(PROFILE) MINIGEN_PROGRESS=text $(VENV)/bin/jupyter execute --inplace --timeout=-1 $(NB)

# Mutation testing of the diffusion and nn code, by hand (not in CI; tens of minutes).
mutation: $(STAMP)
	$(PY) benchmarks/mutation.py

clean:
	rm -rf _build
