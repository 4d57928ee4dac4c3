# make demo : create the environment, install, segment the bundled sample, print where the outputs are
# make test : create the environment, install, build the PythonQt test host, run the whole test suite
#             (PYTHONQT=0 skips the tests under Slicer's Qt binding, e.g. where Debian's Qt 5 is not available)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE := Resources/Samples/spider_t2_sample/image.nii.gz
DEMO_OUT := demo-output
PYTHONQT ?= 1

.PHONY: install demo test lint pythonqt-host

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/spinesegdiff segment $(SAMPLE) -o $(DEMO_OUT) --overwrite
	@echo "outputs: $$(ls -d $(DEMO_OUT)/*)"

pythonqt-host:
	bash Testing/pythonqt_host/build.sh >/dev/null

test: install $(if $(filter 1,$(PYTHONQT)),pythonqt-host)
	SPINESEGDIFF_REQUIRE_PYTHONQT=$(PYTHONQT) $(BIN)/python -m pytest Testing

lint: install
	$(BIN)/ruff check .
