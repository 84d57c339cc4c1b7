# minigen: `make book` builds the HTML book, `make test` runs every test.
# Both create the virtual environment in .venv (and install everything) on first use.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= cpu
NB      ?= notebooks/*.ipynb

.PHONY: venv book test unit notebooks-smoke book-strict execute clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The rendered book, from the outputs stored in the notebooks (nothing is executed).
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going

# Everything CI runs: unit tests, the notebooks under nbval in the smoke profile, the strict book build.
test: unit notebooks-smoke book

unit: $(STAMP)
	$(PY) -m pytest tests

notebooks-smoke: $(STAMP)
	MINIGEN_PROFILE=smoke $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

# Re-execute the notebooks in place and store their outputs: make execute PROFILE=cpu NB=notebooks/01_convolution.ipynb
execute: $(STAMP)
	MINIGEN_PROFILE=$(PROFILE) $(VENV)/bin/jupyter execute --inplace --timeout=-1 $(NB)

clean:
	rm -rf _build
