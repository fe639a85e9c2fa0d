# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch where no GPU is present (a pinned version keeps pip from
	# pulling gigabytes of CUDA wheels); pyproject's range accepts it as it is.
	$(BIN)/pip install --quiet "torch==2.13.0"
	# decord2 installs the module of the old decord package: never both in one environment.
	$(BIN)/pip uninstall --quiet --yes decord 2>/dev/null || true
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fame-ray pretrain

# The linter and the format check run first: a violation fails `make test` (and so CI).
lint: $(STAMP)
	$(BIN)/ruff check fame_ray tests benchmarks
	$(BIN)/ruff format --check fame_ray tests benchmarks

test: lint
	PYTHON=$(BIN)/python tests/run.sh -v --timeout=900


clean:
	rm -rf $(VENV) fame-ray-runs fame-ray-data
