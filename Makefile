# make demo : create the environment, install, segment the bundled sample, print where the outputs are
# make test : create the environment, install, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE := Resources/Samples/spider_t2_sample/image.nii.gz
DEMO_OUT := demo-output

.PHONY: install demo test lint

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

test: install
	$(BIN)/python -m pytest Testing

lint: install
	$(BIN)/ruff check .
