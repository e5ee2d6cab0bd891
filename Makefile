# The two set-up commands of the README. Each creates .venv if missing, installs torch first
# (TORCH=... to choose another build, e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cu124"),
# then the package, then runs.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
OUT    ?= demo_output
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo notebooks test test-all deepspeed bench clean

demo: $(STAMP)
	$(BIN)/pythia-suite demo --out $(OUT)

# the notebooks of notebooks/, executed against the demo output (run `make demo` first): OUT/notebooks/
notebooks: $(STAMP)
	$(BIN)/pythia-suite notebooks --out $(OUT)

# pytest exits 5 when no test was collected; that is not a failure of the suite.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

# DeepSpeed for `train --parallel deepspeed` (optional): its build imports the installed torch,
# which it must not replace, hence no build isolation
deepspeed: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-build-isolation -e '.[deepspeed]'

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
